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
  const code = sqlState(err);
  return code === '57014' || code === '55P03';
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

const UNAVAILABLE_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']);
const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error',
  'Connection ended unexpectedly',
  'Client was closed',
  'Cannot use a pool after calling end',
];

/**
 * The database cannot be reached or is restarting: SQLSTATE class 08
 * (connection exception), 57P01..57P03 (shutdown, cannot connect now), 53300
 * (too many connections), a socket-level failure of the driver, or TypeORM
 * refusing to go on with a transaction whose connection died.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  // TypeORM releases a transaction's query runner when its connection dies;
  // what the transaction tries next fails with these. Nothing was committed.
  const name = typeof err === 'object' && err !== null ? (err as { name?: string }).name : undefined;
  if (name === 'QueryRunnerAlreadyReleasedError' || name === 'QueryRunnerProviderAlreadyReleasedError') return true;
  const code = sqlState(err);
  if (code !== undefined) {
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300') return true;
    if (UNAVAILABLE_SOCKET_CODES.has(code)) return true;
  }
  const message = typeof err === 'object' && err !== null ? String((err as PgLikeError).message ?? '') : '';
  return UNAVAILABLE_MESSAGES.some((m) => message.includes(m));
}
