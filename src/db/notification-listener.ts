import { Client, type ClientConfig } from 'pg';
import type { Logger } from '../logger';

const FIRST_RETRY_MS = 100;
/**
 * At most this long between attempts: what streams wait after the
 * database is back is up to one of these (the contract delivers events
 * within a second). It was 5 s.
 */
const LAST_RETRY_MS = 1_000;
/** While it cannot connect, one log line per this many failed attempts, once at the longest wait (about a minute). */
const LOG_EVERY_FAILURES = 60;
/**
 * While listening, the connection is asked `SELECT 1` this often, and given
 * up when the answer takes longer than the timeout: a connection whose path
 * went silent (no FIN, no RST: a dead host, a dropped NAT entry) raises no
 * error for as long as the kernel's keepalive takes (hours), and meanwhile
 * every notification was lost while readers slept as if it were listening.
 */
export const DEFAULT_PROBE = { everyMs: 2_000, timeoutMs: 3_000 };
/** How long a connection given up may take to end before its socket is cut. */
const END_WAIT_MS = 1_000;

/** What a listener tells its owner. */
export interface NotificationHandlers {
  /** A NOTIFY on one of the channels (payload '' when none was given). */
  notification(channel: string, payload: string): void;
  /** LISTEN took effect: at start, and again after every lost connection. */
  listening?(): void;
  /** The connection was lost: notifications sent until `listening` comes again are lost. */
  lost?(): void;
}

export interface NotificationListenerOptions {
  channels: readonly string[];
  /** How the connection shows in pg_stat_activity; name the process in it. */
  applicationName: string;
  logger: Logger;
  /** The log lines: once listening, on a loss (once it had listened), and while it cannot listen yet. */
  messages: { listening: string; lost: string; notYet: string };
  /** How often the connection is checked while listening, and how long an answer may take (default DEFAULT_PROBE). */
  probe?: { everyMs: number; timeoutMs: number };
}

/**
 * One connection outside the pool that LISTENs to some channels (a pooled
 * connection cannot: the pool hands it to others). On a lost connection it
 * tells its owner, logs it and connects again, waiting 0.1 s, then twice as
 * long each failed attempt, up to 1 s; `listening` says when it is back.
 */
export class NotificationListener {
  private client: Client | undefined;
  private listening = false;
  private retryMs = FIRST_RETRY_MS;
  /** Failed attempts in a row at the longest wait (for the log). */
  private longFailures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly connection: ClientConfig,
    private readonly options: NotificationListenerOptions,
    private readonly on: NotificationHandlers,
  ) {}

  isListening(): boolean {
    return this.listening;
  }

  /** Resolves once the first attempt succeeded or failed (it then keeps retrying). */
  start(): Promise<void> {
    return this.connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.probeTimer);
    const client = this.client;
    this.client = undefined;
    this.listening = false;
    if (client) await this.discard(client);
  }

  private async connect(): Promise<void> {
    const client = new Client(
      Object.assign({}, this.connection, { application_name: this.options.applicationName, keepAlive: true, keepAliveInitialDelayMillis: 10_000 }),
    );
    this.client = client;
    client.on('notification', (message) => {
      if (this.options.channels.includes(message.channel)) this.on.notification(message.channel, message.payload ?? '');
    });
    client.on('error', (err) => this.lose(client, err));
    client.on('end', () => this.lose(client, new Error('the connection was closed')));
    try {
      await client.connect();
      for (const channel of this.options.channels) await client.query(`LISTEN ${channel}`);
    } catch (err) {
      this.lose(client, err);
      return;
    }
    if (this.client !== client) return; // closed, or lost, meanwhile
    this.listening = true;
    this.retryMs = FIRST_RETRY_MS;
    this.longFailures = 0;
    this.on.listening?.();
    this.options.logger.info({ application_name: this.options.applicationName }, this.options.messages.listening);
    this.probeLater(client);
  }

  /** Checks `client` after a while, and again after each answer, until it is given up. */
  private probeLater(client: Client): void {
    const { everyMs, timeoutMs } = this.options.probe ?? DEFAULT_PROBE;
    this.probeTimer = setTimeout(() => {
      if (this.client !== client) return;
      const silent = setTimeout(() => this.lose(client, new Error(`the connection did not answer within ${timeoutMs} ms`)), timeoutMs);
      client.query('SELECT 1').then(
        () => {
          clearTimeout(silent);
          if (this.client === client) this.probeLater(client);
        },
        (err: unknown) => {
          clearTimeout(silent);
          this.lose(client, err);
        },
      );
    }, everyMs);
    this.probeTimer.unref();
  }

  private lose(client: Client, err: unknown): void {
    if (this.client !== client) return; // a connection already given up
    const wasListening = this.listening;
    clearTimeout(this.probeTimer);
    this.client = undefined;
    this.listening = false;
    this.on.lost?.();
    void this.discard(client);
    if (this.closed) return;
    if (this.retryMs < LAST_RETRY_MS || this.longFailures++ % LOG_EVERY_FAILURES === 0) {
      this.options.logger.warn({ err, retry_in_ms: this.retryMs }, wasListening ? this.options.messages.lost : this.options.messages.notYet);
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, this.retryMs);
    this.retryTimer.unref(); // the server it serves keeps the process alive, not its retries
    this.retryMs = Math.min(this.retryMs * 2, LAST_RETRY_MS);
  }

  /** Ends `client`, or cuts its socket when that takes more than a second (a silent connection never answers the goodbye). */
  private async discard(client: Client): Promise<void> {
    client.removeAllListeners();
    client.on('error', () => {}); // a late socket error of a connection given up
    let cut: NodeJS.Timeout | undefined;
    await Promise.race([
      client.end().catch(() => {}),
      new Promise<void>((resolve) => {
        cut = setTimeout(() => {
          (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
          resolve();
        }, END_WAIT_MS);
        cut.unref();
      }),
    ]);
    clearTimeout(cut);
  }
}
