/**
 * The server or the CLI could not start: the database cannot be reached or
 * has the wrong encoding, an address is taken, a TLS file is not PEM. An
 * operator's problem, not a bug: the message is one sentence that says what
 * to do, with the cause's own words, so it carries no stack trace for the
 * CLI to print.
 */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
    this.stack = message;
  }
}

/** An error's message on one line, without trailing punctuation: for "… (cause): do this." */
export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n').map((line) => line.trim()).filter((line) => line !== '').join(' ').replace(/[.:;]+$/, '');
}
