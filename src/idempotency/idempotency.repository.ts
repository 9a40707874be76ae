import { createHash } from 'node:crypto';
import type { EntityManager } from 'typeorm';
import { preparedQuery } from '../db/prepared-query';

/** The error a call answered with, as stored for replays. */
export interface StoredError {
  code: number;
  reason: string;
  message: string;
  violations: Array<{ field: string; description: string }>;
  metadata: Record<string, string>;
}

export interface StoredOutcome {
  fingerprint: Buffer;
  response: Buffer | null;
  error: StoredError | null;
}

/** The outcome of one call, to store under its key. */
export interface IdempotencyRecord {
  tenantId: string;
  key: string;
  method: string;
  fingerprint: Buffer;
  outcome: { response: Buffer } | { error: StoredError };
}

/** Stores outcomes of mutating calls under (tenant, idempotency key). */
export class IdempotencyRepository {
  constructor(private readonly manager: EntityManager) {}

  /**
   * Takes a transaction-scoped advisory lock on (tenant, key) without
   * waiting. False means another transaction holds it: the first call with
   * this key is still in flight.
   */
  async tryLock(tenantId: string, key: string): Promise<boolean> {
    const { rows } = await preparedQuery<{ locked: boolean }>(this.manager, 'idempotency_try_lock', 'SELECT pg_try_advisory_xact_lock($1) AS locked', [
      lockId(tenantId, key),
    ]);
    return rows[0]!.locked;
  }

  /** The outcome stored under a key that has not expired. Call after tryLock, in a new statement. */
  async find(tenantId: string, key: string): Promise<StoredOutcome | undefined> {
    const { rows } = await preparedQuery<StoredOutcome>(
      this.manager,
      'idempotency_find',
      `SELECT fingerprint, response, error FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND expire_time > clock_timestamp()`,
      [tenantId, key],
    );
    return rows[0];
  }

  /**
   * tryLock for many keys in ONE statement; answers, per key in order,
   * whether its lock was taken. Keys must be distinct (a transaction may take
   * its own lock twice).
   */
  async tryLockAll(keys: ReadonlyArray<{ tenantId: string; key: string }>): Promise<boolean[]> {
    const { rows } = await preparedQuery<{ locked: boolean }>(
      this.manager,
      'idempotency_try_lock_all',
      `SELECT pg_try_advisory_xact_lock(t.id) AS locked FROM unnest($1::bigint[]) WITH ORDINALITY AS t (id, n) ORDER BY t.n`,
      [keys.map((k) => lockId(k.tenantId, k.key))],
    );
    return rows.map((row) => row.locked);
  }

  /** find for many keys in ONE statement (after tryLockAll, in a new statement); per key in order. */
  async findAll(keys: ReadonlyArray<{ tenantId: string; key: string }>): Promise<Array<StoredOutcome | undefined>> {
    const { rows } = await preparedQuery<StoredOutcome & { n: string }>(
      this.manager,
      'idempotency_find_all',
      `SELECT t.n, k.fingerprint, k.response, k.error
         FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS t (tenant_id, key, n)
         JOIN idempotency_keys k ON k.tenant_id = t.tenant_id AND k.key = t.key AND k.expire_time > clock_timestamp()`,
      [keys.map((k) => k.tenantId), keys.map((k) => k.key)],
    );
    const found = new Array<StoredOutcome | undefined>(keys.length);
    for (const { n, ...stored } of rows) found[Number(n) - 1] = stored;
    return found;
  }

  /** Records outcomes of distinct keys in ONE statement; a key's expired record is replaced. */
  async save(records: readonly IdempotencyRecord[], retentionHours: number): Promise<void> {
    await preparedQuery(
      this.manager,
      'idempotency_save',
      `INSERT INTO idempotency_keys AS k (tenant_id, key, method, fingerprint, response, error, expire_time)
       SELECT t.tenant_id, t.key, t.method, t.fingerprint, t.response, t.error::jsonb, clock_timestamp() + make_interval(hours => $7)
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::text[]) AS t (tenant_id, key, method, fingerprint, response, error)
       ON CONFLICT (tenant_id, key) DO UPDATE
         SET method = EXCLUDED.method, fingerprint = EXCLUDED.fingerprint, response = EXCLUDED.response,
             error = EXCLUDED.error, create_time = clock_timestamp(), expire_time = EXCLUDED.expire_time
       WHERE k.expire_time <= clock_timestamp()`,
      [
        records.map((r) => r.tenantId),
        records.map((r) => r.key),
        records.map((r) => r.method),
        records.map((r) => r.fingerprint),
        records.map((r) => ('response' in r.outcome ? r.outcome.response : null)),
        records.map((r) => ('error' in r.outcome ? JSON.stringify(r.outcome.error) : null)),
        retentionHours,
      ],
    );
  }

  /** Deletes up to `batch` expired keys; answers how many. */
  async pruneExpired(batch: number): Promise<number> {
    // For DELETE, TypeORM's query() answers [rows, affected count].
    const [, deleted]: [unknown[], number] = await this.manager.query(
      `DELETE FROM idempotency_keys WHERE ctid IN (
         SELECT ctid FROM idempotency_keys WHERE expire_time <= clock_timestamp() LIMIT $1)`,
      [batch],
    );
    return deleted;
  }
}

/** A signed 64-bit advisory lock id for (tenant, key). */
function lockId(tenantId: string, key: string): string {
  return createHash('sha256').update(tenantId).update('\0').update(key).digest().readBigInt64BE(0).toString();
}
