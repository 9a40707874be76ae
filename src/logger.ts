import pino from 'pino';

export type Logger = pino.Logger;

/**
 * pino JSON on stdout, written asynchronously (lines are coalesced into few
 * writes instead of one blocking write per call); `flush()` on shutdown.
 * Never pass secrets or whole payloads to it.
 */
export function createLogger(level: string): Logger {
  return pino(
    { level, base: { service: 'credits' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: false }),
  );
}
