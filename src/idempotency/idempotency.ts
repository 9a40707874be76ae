import { createHash } from 'node:crypto';
import type { DataSource, EntityManager } from 'typeorm';
import { inBatches } from '../common/batches';
import { DomainError, ErrorReason } from '../common/domain-error';
import { toWellFormed } from '../common/text';
import { GroupCommit, DEFAULT_GROUP_COMMIT, type GroupCommitOptions, type MemberResult } from '../db/group-commit';
import { retryConflicts } from '../db/transaction';
import { SharedTransaction, TransactionRunner, type WorkRunner } from '../db/unit-of-work';
import { IdempotencyRepository, type IdempotencyRecord, type StoredError, type StoredOutcome } from './idempotency.repository';

export type { StoredError } from './idempotency.repository';

/** What a method's responses are stored as (a grpc-js MethodDefinition is one). */
export interface IdempotentMethod<Res> {
  path: string;
  responseSerialize(response: Res): Buffer;
  responseDeserialize(bytes: Buffer): Res;
}

export interface IdempotentCall<Req, Res> {
  tenantId: string;
  key: string;
  definition: IdempotentMethod<Res>;
  request: Req;
}

/** What an idempotent call answers: the response, or the stored error, and whether it is a replay. */
export type IdempotentOutcome<Res> = { replayed: boolean } & ({ response: Res } | { error: StoredError });

/**
 * The error to store and replay when `err` is the request's fate (invalid,
 * not found, refused by the state), as the caller is told it; undefined for
 * errors that may go away on a retry (unavailable, aborted, a bug), which are
 * answered but not stored. The transport decides (it knows the status codes).
 */
export type FinalErrorOf = (err: unknown) => StoredError | undefined;

/**
 * Exactly-once execution of mutating calls that carry an idempotency key.
 *
 * In ONE transaction: take an advisory lock on (tenant, key) without waiting;
 * look for a stored outcome (same fingerprint → replay it, other →
 * INVALID_ARGUMENT IDEMPOTENCY_KEY_REUSED). A lock another transaction holds
 * is answered from the stored outcome too when there is one (the holder may
 * be another retry reading it: records never change once committed), and
 * only without one as ABORTED IDEMPOTENCY_KEY_IN_USE (the first call is in
 * flight). Otherwise run the handler with a runner that puts
 * its database work in this same transaction, and store the encoded response
 * (or a final error, after rolling the effect back to a savepoint) before
 * COMMIT. The effect and its record commit together or not at all.
 *
 * Calls whose handler's database work is submitted shared work (Add, Deduct,
 * Set) may share such transactions, group-committed (up to 32 calls in one,
 * see sharedAttempt): their keys, balance changes and records then cost a few
 * statements and one commit per group rather than seven round trips per call.
 */
export class Idempotency {
  private readonly groups: GroupCommit<QueuedCall, IdempotentOutcome<unknown>>;

  constructor(
    private readonly dataSource: DataSource,
    private readonly retentionHours: number,
    private readonly finalErrorOf: FinalErrorOf,
    sharing: Partial<GroupCommitOptions> = DEFAULT_GROUP_COMMIT,
  ) {
    this.groups = new GroupCommit<QueuedCall, IdempotentOutcome<unknown>>(
      {
        runGroup: (group) => retryConflicts(() => this.dataSource.transaction((manager) => this.sharedAttempt(manager, group))),
        // executeAlone's savepoint can take back what one call wrote before it
        // failed; a shared transaction cannot.
        onGroupFailure: (q) => this.executeAlone(q.call, q.fingerprint, q.handler),
      },
      sharing,
    );
  }

  /**
   * Runs a call exactly once per key. With `shared`, the call may share its
   * transaction with other shared calls (see sharedAttempt): meant for
   * handlers whose database work is one WorkRunner.submit item. A handler
   * that fails after writing anything makes its group run again call by
   * call, which is correct but slow.
   */
  execute<Req, Res>(call: IdempotentCall<Req, Res>, handler: (run: WorkRunner) => Promise<Res>, options: { shared?: boolean } = {}): Promise<IdempotentOutcome<Res>> {
    const fingerprint = fingerprintOf(call.definition.path, call.request);
    if (!options.shared) return this.executeAlone(call, fingerprint, handler);
    return this.groups.submit({ call, fingerprint, handler } as QueuedCall) as Promise<IdempotentOutcome<Res>>;
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
        const locked = await store.tryLock(tenantId, key);
        const stored = await store.find(tenantId, key);
        if (stored) return replay(stored, fingerprint, definition);
        if (!locked) throw keyInUse();

        await manager.query('SAVEPOINT idempotent_effect');
        let outcome: IdempotentOutcome<Res>;
        let record: IdempotencyRecord['outcome'];
        try {
          const response = await handler(new TransactionRunner(manager));
          record = { response: definition.responseSerialize(response) };
          outcome = { replayed: false, response };
        } catch (err) {
          const error = this.finalErrorOf(err);
          if (!error) throw err;
          await manager.query('ROLLBACK TO SAVEPOINT idempotent_effect');
          record = { error: storable(error) };
          // Answer as the replays will: what was stored.
          outcome = { replayed: false, error: record.error };
        }
        await store.save([{ tenantId, key, method: definition.path, fingerprint, outcome: record }], this.retentionHours);
        return outcome;
      }),
    );
  }

  /**
   * Calls sharing ONE transaction: their keys locked in one statement, looked
   * up in the next, the new calls' submitted work in one statement per kind
   * (their ledger changes: one), their records stored in one, one COMMIT. A
   * stored key is replayed or refused as REUSED, whoever holds its lock, and
   * so are the later copies of a key that appears twice in the group; a key
   * without a record that another transaction holds, or that a call of this
   * group is running, answers IDEMPOTENCY_KEY_IN_USE. A call that fails writes nothing of its own (its item was
   * refused, or it failed before writing): a final error is stored like a
   * result, any other is answered without a record, and the group commits.
   * If a call may have written and failed, or a statement fails, this throws:
   * the transaction rolls back and the group commit runs every call again on
   * its own (executeAlone).
   */
  private async sharedAttempt(manager: EntityManager, group: QueuedCall[]): Promise<Array<MemberResult<IdempotentOutcome<unknown>>>> {
    const answers = new Array<MemberResult<IdempotentOutcome<unknown>>>(group.length);
    const store = new IdempotencyRepository(manager);
    // A key twice in one group: the later copies are answered as the first
    // copy's key stands (its record, or in use: the first copy runs).
    const firstOf = new Map<string, number>();
    const distinct: number[] = [];
    const copies: Array<{ copy: number; first: number }> = [];
    group.forEach((q, i) => {
      const id = `${q.call.tenantId}\0${q.call.key}`;
      const first = firstOf.get(id);
      if (first !== undefined) copies.push({ copy: i, first });
      else {
        firstOf.set(id, i);
        distinct.push(i);
      }
    });
    const keyOf = (i: number) => ({ tenantId: group[i]!.call.tenantId, key: group[i]!.call.key });
    const locked = await store.tryLockAll(distinct.map(keyOf));
    const stored = distinct.length > 0 ? await store.findAll(distinct.map(keyOf)) : [];
    const storedOf = new Map(distinct.map((i, n) => [i, stored[n]]));
    const answerFrom = (i: number, found: StoredOutcome | undefined) => {
      if (!found) {
        answers[i] = { ok: false, error: keyInUse() };
        return;
      }
      try {
        answers[i] = { ok: true, value: replay(found, group[i]!.fingerprint, group[i]!.call.definition) };
      } catch (error) {
        answers[i] = { ok: false, error };
      }
    };
    const fresh = distinct.filter((i, n) => {
      if (locked[n] && !stored[n]) return true;
      answerFrom(i, stored[n]);
      return false;
    });
    for (const { copy, first } of copies) answerFrom(copy, storedOf.get(first));

    const shared = new SharedTransaction(manager);
    const runners = fresh.map(() => shared.runnerForCall());
    // Every handler settles before the transaction ends, whatever happens.
    const results = await Promise.allSettled(fresh.map((i, n) => Promise.resolve().then(() => group[i]!.handler(runners[n]!.run))));
    const records: IdempotencyRecord[] = [];
    for (const [n, i] of fresh.entries()) {
      const { call, fingerprint } = group[i]!;
      const result = results[n]!;
      let record: IdempotencyRecord['outcome'];
      if (result.status === 'fulfilled') {
        record = { response: call.definition.responseSerialize(result.value) };
        answers[i] = { ok: true, value: { replayed: false, response: result.value } };
      } else {
        const err: unknown = result.reason;
        // Something of this call's may be in the transaction: only the
        // call's own savepoint (executeAlone) can take it back.
        if (runners[n]!.wrote()) throw new SharedTransactionAbandoned(err);
        const error = this.finalErrorOf(err);
        if (!error) {
          answers[i] = { ok: false, error: err };
          continue;
        }
        record = { error: storable(error) };
        answers[i] = { ok: true, value: { replayed: false, error: record.error } };
      }
      records.push({ tenantId: call.tenantId, key: call.key, method: call.definition.path, fingerprint, outcome: record });
    }
    if (records.length > 0) await store.save(records, this.retentionHours);
    return answers;
  }

  /** Deletes expired keys in batches (until `signal` aborts); answers how many went. */
  prune(batch = 1000, signal?: AbortSignal): Promise<number> {
    const store = new IdempotencyRepository(this.dataSource.manager);
    return inBatches(batch, (n) => store.pruneExpired(n), signal);
  }
}

/**
 * SHA-256 of the method and a canonical JSON of the decoded request. Map
 * fields (every map of the API is a `metadata` of strings) are taken in key
 * order: protobuf leaves a map's order on the wire to the sender (Go
 * shuffles it on every marshal), and a retry must match whatever order it
 * came in. Fields keep the decoder's order, so a request with one or no
 * metadata entry hashes as it always did.
 */
function fingerprintOf(path: string, request: unknown): Buffer {
  const canonical = JSON.stringify(request, (key, value: unknown) => {
    if (typeof value === 'bigint') return `${value.toString()}n`;
    if (Buffer.isBuffer(value)) return value.toString('base64');
    if (key === 'metadata' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
      return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return value;
  });
  return createHash('sha256').update(path).update('\0').update(canonical).digest();
}

/** PostgreSQL jsonb holds neither U+0000 nor lone surrogates: an error that echoes caller input is kept with U+FFFD in their place. */
function storableText(text: string): string {
  return toWellFormed(text.replaceAll('\u0000', '\uFFFD'));
}

function storable(error: StoredError): StoredError {
  return {
    code: error.code,
    reason: error.reason,
    message: storableText(error.message),
    violations: error.violations.map((v) => ({ field: storableText(v.field), description: storableText(v.description) })),
    metadata: Object.fromEntries(Object.entries(error.metadata).map(([k, v]) => [storableText(k), storableText(v)])),
  };
}

interface QueuedCall {
  call: IdempotentCall<unknown, unknown>;
  fingerprint: Buffer;
  handler: (run: WorkRunner) => Promise<unknown>;
}

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
function replay<Res>(stored: StoredOutcome, fingerprint: Buffer, definition: IdempotentMethod<Res>): IdempotentOutcome<Res> {
  if (!stored.fingerprint.equals(fingerprint)) {
    throw new DomainError(
      ErrorReason.IdempotencyKeyReused,
      'This idempotency key was already used for a different request; use a new key for a new request.',
      [{ field: 'idempotency-key', description: 'was already used for a different request' }],
    );
  }
  if (stored.response) return { replayed: true, response: definition.responseDeserialize(stored.response) };
  return { replayed: true, error: stored.error! };
}
