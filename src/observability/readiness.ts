import { Client, type ClientConfig } from 'pg';
import type { Logger } from '../logger';

/** How the readiness connection shows in pg_stat_activity. */
export const READINESS_APPLICATION_NAME = `credits-readiness (pid ${process.pid})`;

export const DEFAULT_READINESS_INTERVAL_MS = 1000;

/**
 * Watches whether PostgreSQL answers: a `SELECT 1` every `intervalMs` on one
 * connection of its own, outside the pool, so that a pool busy with calls
 * never reads as a database that is down (and the check never waits behind
 * them). `changed` is told on every flip: false on the first failed check
 * (a refused or lost connection, or no answer within the interval plus the
 * connect timeout), true on the first one that succeeds after. A failed
 * connection is dropped and made again on the next check.
 */
export class DatabaseReadiness {
  private client: Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private up = true;

  constructor(
    private readonly connection: ClientConfig,
    private readonly changed: (up: boolean) => void,
    private readonly logger: Logger,
    private readonly intervalMs = DEFAULT_READINESS_INTERVAL_MS,
  ) {}

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    const client = this.client;
    this.client = undefined;
    if (client) await client.end().catch(() => {});
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.check().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, this.intervalMs);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    let reachable: boolean;
    let failure: unknown;
    try {
      if (!this.client) {
        const client = new Client(
          Object.assign({}, this.connection, { application_name: READINESS_APPLICATION_NAME, query_timeout: this.intervalMs + (this.connection.connectionTimeoutMillis ?? 0) }),
        );
        client.on('error', () => this.drop(client)); // a lost connection: the next check connects again
        this.client = client;
        await client.connect();
      }
      await this.client.query('SELECT 1');
      reachable = true;
    } catch (err) {
      if (this.client) this.drop(this.client);
      reachable = false;
      failure = err;
    }
    if (this.stopped || reachable === this.up) return;
    this.up = reachable;
    if (reachable) this.logger.info('the database answers again: serving');
    else this.logger.warn({ err: failure }, 'the database does not answer: health reports NOT_SERVING until it does');
    this.changed(reachable);
  }

  private drop(client: Client): void {
    if (this.client === client) this.client = undefined;
    client.removeAllListeners('error');
    client.on('error', () => {});
    void client.end().catch(() => {});
  }
}
