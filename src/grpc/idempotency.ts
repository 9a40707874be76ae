import { createHash } from 'node:crypto';
import { status, type Metadata, type MethodDefinition } from '@grpc/grpc-js';
import type { DataSource } from 'typeorm';
import { DomainError, ErrorReason, type FieldViolation } from '../common/domain-error';
import { toWellFormed } from '../common/text';
import { retryConflicts } from '../db/transaction';
import { transactionRunner, type WorkRunner } from '../db/unit-of-work';
import { IdempotencyRepository, type StoredError } from '../idempotency/idempotency.repository';
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
 */
export class Idempotency {
  constructor(
    private readonly dataSource: DataSource,
    private readonly retentionHours: number,
  ) {}

  async execute<Req, Res>(
    call: { tenantId: string; key: string; definition: MethodDefinition<Req, Res>; request: Req },
    handler: (run: WorkRunner) => Promise<Res>,
  ): Promise<IdempotentOutcome<Res>> {
    const { tenantId, key, definition } = call;
    const fingerprint = fingerprintOf(definition.path, call.request);
    return retryConflicts(() =>
      this.dataSource.transaction(async (manager): Promise<IdempotentOutcome<Res>> => {
        const store = new IdempotencyRepository(manager);
        if (!(await store.tryLock(tenantId, key))) {
          throw new DomainError(
            ErrorReason.IdempotencyKeyInUse,
            'A request with this idempotency key is still being processed; retry after it completes.',
          );
        }
        const stored = await store.find(tenantId, key);
        if (stored) {
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
        await store.save(tenantId, key, definition.path, fingerprint, record, this.retentionHours);
        return outcome;
      }),
    );
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
