import { createHash } from 'node:crypto';
import { status, type Metadata, type MethodDefinition } from '@grpc/grpc-js';
import type { DataSource, EntityManager } from 'typeorm';
import { DomainError, ErrorReason, type FieldViolation } from '../common/domain-error';
import { toWellFormed } from '../common/text';
import { isDatabaseUnavailable } from '../db/db-errors';
import { retryConflicts } from '../db/transaction';
import { SharedTransaction, transactionRunner, type WorkRunner } from '../db/unit-of-work';
import { IdempotencyRepository, type IdempotencyRecord, type StoredError, type StoredOutcome } from '../idempotency/idempotency.repository';
import { toCallerError, type CallerError } from './error-status';

export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const REPLAYED_HEADER = 'idempotent-replayed';

const KEY_FORMAT = /^[\x20-\x7e]{1,255}$/;

/** The caller's idempotency key, validated; undefined when none was sent. */
export function idempotencyKeyOf(metadata: Metadata): string | undefined {
  const values = metadata.get(IDEMPOTENCY_KEY_HEADER);
  if (values.length === 0) return undefined;
  const key = values[0];
  const bad = (description: string): never => {
    const violation: FieldViolation = { field: IDEMPOTENCY_KEY_HEADER, description };
    throw new DomainError(ErrorReason.ValidationFailed, `Invalid request: metadata ${IDEMPOTENCY_KEY_HEADER} ${description}.`, [violation]);
  };
  if (values.length > 1) bad('must be sent once');
  if (typeof key !== 'string' || !KEY_FORMAT.test(key)) bad('must be 1 to 255 printable ASCII characters');
  return key as string;
}

/** What an idempotent call answers: the response, or the error to send, and whether it is a replay. */
export type IdempotentOutcome<Res> = { replayed: boolean } & ({ response: Res } | { error: CallerError });

/** Errors that are the request's fate (kept and replayed); others (UNAVAILABLE, ABORTED, INTERNAL) may go away on a retry. */
const FINAL_CODES = new Set([status.INVALID_ARGUMENT, status.NOT_FOUND, status.FAILED_PRECONDITION, status.ALREADY_EXISTS]);

/**
 * Exactly-once execution of mutating calls that carry an idempotency key.
 *
 * In ONE transaction: take an advisory lock on (tenant, key) without waiting
 * (held: the first call is in flight → ABORTED IDEMPOTENCY_KEY_IN_USE); look
 * for a stored outcome (same fingerprint → replay it, other → INVALID_ARGUMENT
 * IDEMPOTENCY_KEY_REUSED); otherwise run the handler with a runner that puts
 * its database work in this same transaction, and store the encoded response
 * (or a final error, after rolling the effect back to a savepoint) before
 * COMMIT. The effect and its record commit together or not at all.
 *
 * Keyed Add/Deduct calls share such transactions (up to 32 calls in one, see
 * runShared), so that under load their keys, balance changes and records
 * cost a few statements and one commit per group rather than seven round
 * trips per call.
 */
export class Idempotency {
  private readonly queue: QueuedCall[] = [];
  private running = 0;
  private scheduled = false;

  constructor(
    private readonly dataSource: DataSource,
    private readonly retentionHours: number,
    private readonly sharing: SharingOptions = DEFAULT_SHARING,
  ) {}

  /**
   * Runs a call exactly once per key. With `shared`, the call may share its
   * transaction with other shared calls that arrive while up to
   * `maxTransactions` shared transactions run (see runShared): meant for
   * handlers whose database work is one WorkRunner.coalesce item. A handler
   * that fails after writing anything makes its group run again call by
   * call, which is correct but slow.
   */
  execute<Req, Res>(call: IdempotentCall<Req, Res>, handler: (run: WorkRunner) => Promise<Res>, options: { shared?: boolean } = {}): Promise<IdempotentOutcome<Res>> {
    const fingerprint = fingerprintOf(call.definition.path, call.request);
    if (!options.shared) return this.executeAlone(call, fingerprint, handler);
    return new Promise((resolve, reject) => {
      this.queue.push({ call, fingerprint, handler, resolve, reject } as QueuedCall);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.dispatch();
        });
      }
    });
  }

  private executeAlone<Req, Res>(
    call: IdempotentCall<Req, Res>,
    fingerprint: Buffer,
    handler: (run: WorkRunner) => Promise<Res>,
  ): Promise<IdempotentOutcome<Res>> {
    const { tenantId, key, definition } = call;
    return retryConflicts(() =>
      this.dataSource.transaction(async (manager): Promise<IdempotentOutcome<Res>> => {
        const store = new IdempotencyRepository(manager);
        if (!(await store.tryLock(tenantId, key))) throw keyInUse();
        const stored = await store.find(tenantId, key);
        if (stored) return replay(stored, fingerprint, definition);

        await manager.query('SAVEPOINT idempotent_effect');
        const inThisTransaction = transactionRunner(manager);
        let outcome: IdempotentOutcome<Res>;
        let record: { response: Buffer } | { error: StoredError };
        try {
          const response = await handler(inThisTransaction);
          record = { response: definition.responseSerialize(response) };
          outcome = { replayed: false, response };
        } catch (err) {
          const error = toCallerError(err);
          if (!(err instanceof DomainError) || !FINAL_CODES.has(error.code)) throw err;
          await manager.query('ROLLBACK TO SAVEPOINT idempotent_effect');
          record = { error: toStoredError(error) };
          // Answer as the replays will: what was stored.
          outcome = { replayed: false, error: fromStoredError(record.error) };
        }
        await store.save([{ tenantId, key, method: definition.path, fingerprint, outcome: record }], this.retentionHours);
        return outcome;
      }),
    );
  }

  private dispatch(): void {
    while (this.running < this.sharing.maxTransactions && this.queue.length > 0) {
      const group = this.queue.splice(0, this.sharing.maxCalls);
      this.running++;
      void this.runShared(group).finally(() => {
        this.running--;
        this.dispatch();
      });
    }
  }

  /**
   * Calls sharing ONE transaction: their keys locked in one statement, looked
   * up in the next, the new calls' coalesced work in one statement per kind
   * (their ledger changes: one), their records stored in one, one COMMIT. A
   * key another transaction holds, or that appears twice in the group,
   * answers IDEMPOTENCY_KEY_IN_USE; a stored key is replayed or refused as
   * REUSED. A call that fails writes nothing of its own (its coalesced item
   * was refused, or it failed before writing): a final error is stored like a
   * result, any other is answered without a record, and the group commits.
   * If a call may have written and failed, or a statement fails, the group
   * is rolled back and every call runs again on its own (executeAlone, whose
   * savepoint handles what a shared transaction cannot); if the database is
   * unreachable, every call gets that error.
   */
  private async runShared(group: QueuedCall[]): Promise<void> {
    let answers: SharedAnswer[];
    try {
      answers = await retryConflicts(() => this.dataSource.transaction((manager) => this.sharedAttempt(manager, group)));
    } catch (err) {
      if (isDatabaseUnavailable(err)) {
        for (const queued of group) queued.reject(err);
        return;
      }
      await Promise.all(group.map((q) => this.executeAlone(q.call, q.fingerprint, q.handler).then(q.resolve, q.reject)));
      return;
    }
    group.forEach((queued, i) => {
      const answer = answers[i]!;
      if (answer.ok) queued.resolve(answer.outcome);
      else queued.reject(answer.err);
    });
  }

  private async sharedAttempt(manager: EntityManager, group: QueuedCall[]): Promise<SharedAnswer[]> {
    const answers = new Array<SharedAnswer>(group.length);
    const store = new IdempotencyRepository(manager);
    // A key twice in one group: the later calls find it in use, as they would
    // if they had come a moment later.
    const seen = new Set<string>();
    const distinct: number[] = [];
    group.forEach((q, i) => {
      const id = `${q.call.tenantId}\0${q.call.key}`;
      if (seen.has(id)) answers[i] = { ok: false, err: keyInUse() };
      else {
        seen.add(id);
        distinct.push(i);
      }
    });
    const keyOf = (i: number) => ({ tenantId: group[i]!.call.tenantId, key: group[i]!.call.key });
    const locked = await store.tryLockAll(distinct.map(keyOf));
    const mine = distinct.filter((i, n) => {
      if (!locked[n]) answers[i] = { ok: false, err: keyInUse() };
      return locked[n];
    });
    const stored = mine.length > 0 ? await store.findAll(mine.map(keyOf)) : [];
    const fresh = mine.filter((i, n) => {
      const found = stored[n];
      if (!found) return true;
      try {
        answers[i] = { ok: true, outcome: replay(found, group[i]!.fingerprint, group[i]!.call.definition) };
      } catch (err) {
        answers[i] = { ok: false, err };
      }
      return false;
    });

    const shared = new SharedTransaction(manager);
    const runners = fresh.map(() => shared.runnerForCall());
    // Every handler settles before the transaction ends, whatever happens.
    const results = await Promise.allSettled(fresh.map((i, n) => Promise.resolve().then(() => group[i]!.handler(runners[n]!.run))));
    const records: IdempotencyRecord[] = [];
    for (const [n, i] of fresh.entries()) {
      const { call, fingerprint } = group[i]!;
      const result = results[n]!;
      let record: { response: Buffer } | { error: StoredError };
      if (result.status === 'fulfilled') {
        record = { response: call.definition.responseSerialize(result.value) };
        answers[i] = { ok: true, outcome: { replayed: false, response: result.value } };
      } else {
        const err: unknown = result.reason;
        // Something of this call's may be in the transaction: only the
        // call's own savepoint (executeAlone) can take it back.
        if (runners[n]!.wrote()) throw new SharedTransactionAbandoned(err);
        const error = toCallerError(err);
        if (!(err instanceof DomainError) || !FINAL_CODES.has(error.code)) {
          answers[i] = { ok: false, err };
          continue;
        }
        record = { error: toStoredError(error) };
        answers[i] = { ok: true, outcome: { replayed: false, error: fromStoredError(record.error) } };
      }
      records.push({ tenantId: call.tenantId, key: call.key, method: call.definition.path, fingerprint, outcome: record });
    }
    if (records.length > 0) await store.save(records, this.retentionHours);
    return answers;
  }

  /** Deletes expired keys in batches; answers how many went. */
  async prune(batch = 1000): Promise<number> {
    const store = new IdempotencyRepository(this.dataSource.manager);
    let total = 0;
    for (;;) {
      const deleted = await store.pruneExpired(batch);
      total += deleted;
      if (deleted < batch) return total;
    }
  }
}

/** SHA-256 of the method and a canonical JSON of the decoded request. */
function fingerprintOf(path: string, request: unknown): Buffer {
  const canonical = JSON.stringify(request, (_key, value: unknown) => {
    if (typeof value === 'bigint') return `${value.toString()}n`;
    if (Buffer.isBuffer(value)) return value.toString('base64');
    return value;
  });
  return createHash('sha256').update(path).update('\0').update(canonical).digest();
}

/** PostgreSQL jsonb holds neither U+0000 nor lone surrogates: an error that echoes caller input is kept with U+FFFD in their place. */
function storable(text: string): string {
  return toWellFormed(text.replaceAll('\u0000', '\uFFFD'));
}

function toStoredError(error: CallerError): StoredError {
  return {
    code: error.code,
    reason: error.reason,
    message: storable(error.message),
    violations: error.violations.map((v) => ({ field: storable(v.field), description: storable(v.description) })),
    metadata: Object.fromEntries(Object.entries(error.metadata).map(([k, v]) => [storable(k), storable(v)])),
  };
}

function fromStoredError(stored: StoredError): CallerError {
  return {
    code: stored.code as status,
    reason: stored.reason as ErrorReason,
    message: stored.message,
    violations: stored.violations,
    metadata: stored.metadata,
    expected: true,
  };
}

export interface IdempotentCall<Req, Res> {
  tenantId: string;
  key: string;
  definition: MethodDefinition<Req, Res>;
  request: Req;
}

/** What one call of a shared transaction gets once it committed: an outcome, or an error thrown at the caller. */
type SharedAnswer = { ok: true; outcome: IdempotentOutcome<unknown> } | { ok: false; err: unknown };

interface QueuedCall {
  call: IdempotentCall<unknown, unknown>;
  fingerprint: Buffer;
  handler: (run: WorkRunner) => Promise<unknown>;
  resolve(outcome: IdempotentOutcome<unknown>): void;
  reject(err: unknown): void;
}

export interface SharingOptions {
  /** Shared transactions in flight at once (each holds one pooled connection). */
  maxTransactions: number;
  /** Calls in one shared transaction at most. */
  maxCalls: number;
}

const DEFAULT_SHARING: SharingOptions = { maxTransactions: 4, maxCalls: 32 };

/** A call of a shared transaction failed after it may have written: the group runs again call by call. */
class SharedTransactionAbandoned extends Error {
  constructor(readonly reason: unknown) {
    super('a call of a shared transaction failed after it may have written');
  }
}

function keyInUse(): DomainError {
  return new DomainError(ErrorReason.IdempotencyKeyInUse, 'A request with this idempotency key is still being processed; retry after it completes.');
}

/** The stored outcome of a key, if the request is the one stored; IDEMPOTENCY_KEY_REUSED otherwise. */
function replay<Req, Res>(stored: StoredOutcome, fingerprint: Buffer, definition: MethodDefinition<Req, Res>): IdempotentOutcome<Res> {
  if (!stored.fingerprint.equals(fingerprint)) {
    throw new DomainError(
      ErrorReason.IdempotencyKeyReused,
      'This idempotency key was already used for a different request; use a new key for a new request.',
      [{ field: IDEMPOTENCY_KEY_HEADER, description: 'was already used for a different request' }],
    );
  }
  if (stored.response) return { replayed: true, response: definition.responseDeserialize(stored.response) };
  return { replayed: true, error: fromStoredError(stored.error!) };
}
