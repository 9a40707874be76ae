import pino from 'pino';
import { traceFields } from './observability/trace-context';

export type Logger = pino.Logger;

/**
 * pino JSON on stdout, written asynchronously (lines are coalesced into few
 * writes instead of one blocking write per call); `flush()` on shutdown.
 * With `traceContext` (tracing on), every line written inside a traced call
 * carries that call's `trace_id` and `span_id`.
 * Never pass secrets or whole payloads to it.
 */
export function createLogger(level: string, options: { traceContext?: boolean } = {}): Logger {
  return pino(
    { level, base: { service: 'credits' }, timestamp: pino.stdTimeFunctions.isoTime, ...(options.traceContext ? { mixin: traceFields } : {}) },
    pino.destination({ dest: 1, sync: false }),
  );
}
