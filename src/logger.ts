import pino from 'pino';
import { traceFields } from './observability/trace-context';

export type Logger = pino.Logger;

/** Pending log bytes that start a write (see lineDestination; below LOG_WRITE_BYTES). */
const LOG_BUFFER_BYTES = 32 * 1024;
/** The most one write takes (sonic-boom's maxWrite; its default, 16 KB, would cap LOG_BUFFER_BYTES). */
const LOG_WRITE_BYTES = 128 * 1024;
/** The longest a logged line waits for its write. */
const LOG_FLUSH_MS = 100;

/**
 * pino JSON on stdout (or `fd`), written asynchronously (lines are coalesced
 * into few writes instead of one blocking write per call); `flush()` on
 * shutdown. With `traceContext` (tracing on), every line written inside a
 * traced call carries that call's `trace_id` and `span_id`.
 * Never pass secrets or whole payloads to it. An `err` is logged by
 * `loggedError`: what says which statement failed and why, not the row's
 * values PostgreSQL and TypeORM attach to it.
 */
export function createLogger(level: string, options: { traceContext?: boolean; fd?: number } = {}): Logger {
  return pino(
    {
      level,
      base: { service: 'credits' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: loggedError },
      ...(options.traceContext ? { mixin: traceFields } : {}),
    },
    lineDestination(options.fd ?? 1),
  );
}

/**
 * Fields of an error that may be logged. pg's errors carry `detail` ("Failing
 * row contains (…)": a customer's id, a description, an idempotency key),
 * `where` and `internalQuery`; TypeORM's carry the statement's `parameters`
 * (the items of a write, as JSON). pino's own serializer logged them all.
 */
const LOGGED_ERROR_FIELDS = ['code', 'severity', 'routine', 'schema', 'table', 'column', 'dataType', 'constraint', 'query'] as const;

/** An error as a log line holds it: type, message, stack and LOGGED_ERROR_FIELDS, its driverError and cause the same way. */
export function loggedError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error)) return err;
  const source = err as unknown as Record<string, unknown>;
  const logged: Record<string, unknown> = { type: err.constructor?.name ?? err.name, message: err.message, stack: err.stack };
  for (const field of LOGGED_ERROR_FIELDS) {
    if (source[field] !== undefined && source[field] !== null) logged[field] = source[field];
  }
  if (depth < 3) {
    if (source.driverError !== undefined) logged.driverError = loggedError(source.driverError, depth + 1);
    if (err.cause !== undefined) logged.cause = loggedError(err.cause, depth + 1);
  }
  return logged;
}

/**
 * sonic-boom (pino's asynchronous writer) with each line handed over as
 * UTF-8 bytes. In its default text mode it appends a line to the text still
 * waiting for a write and then measures that text's UTF-8 length, which
 * flattens all of it again for every line: under load, about 8 KB of garbage
 * per 400-byte line (a tenth of what a ListPromotionalCredits call
 * allocated). In buffer mode a line is copied once and the pending lines are
 * joined once per write.
 *
 * Lines are written once LOG_BUFFER_BYTES are pending, and at the latest
 * LOG_FLUSH_MS after they were logged: written as soon as possible, every
 * line was a write of its own through libuv's thread pool (5% of an Add's
 * CPU). sonic-boom still writes what is pending when the process exits
 * (pino registers that for its destinations), and `flush()` on shutdown.
 * An exit with a write still in flight may put the lines it writes then
 * before that write's (none is lost; test/observability/logger.unit.test.ts).
 */
function lineDestination(fd: number): pino.DestinationStream & { flush(cb?: (err?: Error) => void): void } {
  const sonic = pino.destination({ dest: fd, sync: false, contentMode: 'buffer', minLength: LOG_BUFFER_BYTES, maxWrite: LOG_WRITE_BYTES, periodicFlush: LOG_FLUSH_MS });
  // sonic-boom's types know only text; in buffer mode write takes bytes.
  // Looked up on every line: pino replaces it with a no-op after EPIPE.
  const bytes = sonic as unknown as { write(bytes: Buffer): boolean };
  return {
    write: (line: string) => bytes.write(Buffer.from(line, 'utf8')),
    flush: (cb?: (err?: Error) => void) => sonic.flush(cb),
  };
}
