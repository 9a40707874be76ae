/** Classifies errors from pg/TypeORM by SQLSTATE and socket error codes. */

interface PgLikeError {
  code?: string;
  driverError?: { code?: string };
  message?: string;
}

function sqlState(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as PgLikeError;
  return e.driverError?.code ?? e.code;
}

/**
 * A statement stopped before it finished: canceled (57014: the statement
 * timeout, a cancel request) or refused a lock it waited too long for
 * (55P03: lock_timeout). Its transaction rolls back: nothing was written.
 */
export function isStatementCut(err: unknown): boolean {
  return sqlState(err) === '57014' || isLockNotAvailable(err);
}

/** A lock waited for longer than lock_timeout (55P03): the statement failed, and its transaction unless a savepoint takes it back. */
export function isLockNotAvailable(err: unknown): boolean {
  return sqlState(err) === '55P03';
}

/** Deadlock or serialization failure: the transaction may simply be run again. */
export function isRetryableConflict(err: unknown): boolean {
  const code = sqlState(err);
  return code === '40001' || code === '40P01';
}

export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  if (sqlState(err) !== '23505') return false;
  if (constraint === undefined) return true;
  const e = err as { constraint?: string; driverError?: { constraint?: string } };
  return (e.driverError?.constraint ?? e.constraint) === constraint;
}

/** A foreign key violation (23503), of `constraint` when given. */
export function isForeignKeyViolation(err: unknown, constraint?: string): boolean {
  if (sqlState(err) !== '23503') return false;
  if (constraint === undefined) return true;
  const e = err as { constraint?: string; driverError?: { constraint?: string } };
  return (e.driverError?.constraint ?? e.constraint) === constraint;
}

/** What pg-pool fails a wait for a connection with, after connectionTimeoutMillis. */
export const POOL_WAIT_TIMEOUT = 'timeout exceeded when trying to connect';

/**
 * A wait for a pooled connection that timed out while every connection of
 * the pool was lent out, connected (see ConnectionsInUse): the calls holding
 * them were slow or the database did not answer their statements; not a
 * database that refuses or cannot be reached. Still DATABASE_UNAVAILABLE
 * (its message says which), and its message keeps pg-pool's.
 */
export class PoolExhaustedError extends Error {
  override readonly name = 'PoolExhaustedError';

  constructor(readonly poolSize: number) {
    super(`${POOL_WAIT_TIMEOUT}: all ${poolSize} pooled connections were in use`);
  }
}

const UNAVAILABLE_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']);
const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  POOL_WAIT_TIMEOUT,
  'Client has encountered a connection error',
  'Connection ended unexpectedly',
  'Client was closed',
  'Cannot use a pool after calling end',
];

/**
 * The database cannot be reached, is restarting or cannot take writes now:
 * SQLSTATE class 08 (connection exception), class 53 (insufficient
 * resources: too many connections, disk full, out of memory), 57P01..57P05
 * (shutdown, cannot connect now, database dropped, idle session timeout),
 * 25006 (a write on a read-only server: a standby, as after a failover, or
 * default_transaction_read_only), 55000 refusing connections (ALLOW_CONNECTIONS
 * false), a socket-level failure of the driver, or TypeORM refusing to go on
 * with a transaction whose connection died. Each fails the statement before it
 * writes: the caller may retry.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  // TypeORM releases a transaction's query runner when its connection dies;
  // what the transaction tries next fails with these. Nothing was committed.
  const name = typeof err === 'object' && err !== null ? (err as { name?: string }).name : undefined;
  if (name === 'QueryRunnerAlreadyReleasedError' || name === 'QueryRunnerProviderAlreadyReleasedError') return true;
  const code = sqlState(err);
  if (code !== undefined) {
    if (code.startsWith('08') || code.startsWith('53') || /^57P0[1-5]$/.test(code) || code === '25006') return true;
    if (UNAVAILABLE_SOCKET_CODES.has(code)) return true;
  }
  const message = typeof err === 'object' && err !== null ? String((err as PgLikeError).message ?? '') : '';
  // 55000 is also a bug's SQLSTATE (object not in prerequisite state); only this one is an outage.
  if (code === '55000' && message.includes('is not currently accepting connections')) return true;
  return UNAVAILABLE_MESSAGES.some((m) => message.includes(m));
}
