import pino from 'pino';

export type Logger = pino.Logger;

/** pino JSON on stdout; never pass secrets or whole payloads to it. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'credits' }, timestamp: pino.stdTimeFunctions.isoTime });
}
