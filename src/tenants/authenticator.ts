import { timingSafeEqual } from 'node:crypto';
import type { ClientConfig } from 'pg';
import type { DataSource, EntityManager } from 'typeorm';
import { connectionOf } from '../db/data-source';
import { NotificationListener } from '../db/notification-listener';
import { preparedQuery } from '../db/prepared-query';
import type { Logger } from '../logger';
import type { Scope } from './api-key.entity';
import { parseApiKey } from './api-key.secret';
import type { Principal } from './principal';

/** `credits api-key revoke` notifies this channel, with the key's id, in the revoking transaction. */
export const API_KEY_REVOKED_CHANNEL = 'credits_api_key_revoked';

/** How the listener's connection shows in pg_stat_activity: which process's it is, too. */
export const LISTENER_APPLICATION_NAME = `credits-auth-listener (pid ${process.pid})`;

const MAX_CACHED_KEYS = 10_000;

/** How often the keys of open streams are checked in the database while no revocation can be heard. */
export const STREAM_KEY_CHECK_MS = 1_000;

export interface AuthenticatorOptions {
  /** How long a valid key is remembered; 0 checks the database on every call (and listens for nothing). */
  cacheMs: number;
  logger: Logger;
  /** The listener's connection; by default the data source's database. */
  listenerConnection?: ClientConfig;
  /** Told, for every well-formed key, whether the cache answered (a metrics counter). */
  onLookup?: (cached: boolean) => void;
}

interface StoredKey {
  secretHash: Buffer;
  principal: Principal;
}

/**
 * Resolves API keys to principals, comparing the secret's hash in constant
 * time. A key found in the database is remembered for `cacheMs` so that most
 * calls cost no query, but only while this process listens for revocations:
 * a revocation forgets the key at once, on every replica. Without a working
 * listener (not yet connected, or its connection lost) every call checks the
 * database, so the cache can make a valid key's check faster and never let a
 * revoked key in for longer. Unknown keys are never cached.
 */
export class Authenticator {
  private readonly cache = new Map<string, { key: StoredKey; expires: number }>();
  /** The lookups in flight, per key id, with the generation each began in: see lookUp. */
  private readonly lookups = new Map<string, { generation: number; key: Promise<StoredKey | undefined> }>();
  private readonly listener: NotificationListener | undefined;
  /** Changes on every revocation, loss and new connection: see generation(). */
  private epoch = 0;
  private readonly manager: EntityManager;
  private readonly cacheMs: number;
  private readonly onLookup: ((cached: boolean) => void) | undefined;
  /** What to do when a key is revoked, per key id: the open streams called with it end. */
  private readonly watchers = new Map<string, Set<() => void>>();
  private checkTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(dataSource: DataSource, options: AuthenticatorOptions) {
    this.manager = dataSource.manager;
    this.cacheMs = options.cacheMs;
    this.onLookup = options.onLookup;
    if (this.cacheMs > 0) {
      this.listener = new NotificationListener(
        options.listenerConnection ?? connectionOf(dataSource),
        {
          channels: [API_KEY_REVOKED_CHANNEL],
          applicationName: LISTENER_APPLICATION_NAME,
          logger: options.logger,
          messages: {
            listening: 'listening for API key revocations; the key cache is in use',
            lost: 'lost the connection listening for API key revocations: dropped the key cache; every call checks the database until it listens again',
            notYet: 'cannot listen for API key revocations yet: every call checks the database meanwhile',
          },
        },
        {
          notification: (_channel, keyId) => {
            if (keyId === '') return;
            this.epoch++;
            this.cache.delete(keyId);
            this.revoked(keyId);
          },
          listening: () => {
            this.epoch++;
            // Revocations sent while it was not listening were not heard: check the streams' keys once.
            this.scheduleCheck(0);
          },
          // Revocations sent while it was not listening are lost: forget everything.
          lost: () => {
            this.epoch++;
            this.cache.clear();
            this.scheduleCheck(STREAM_KEY_CHECK_MS);
          },
        },
      );
    }
  }

  /**
   * Undefined while not listening; otherwise a number that stays the same
   * only as long as no revocation arrived and the connection was not lost.
   */
  private generation(): number | undefined {
    return this.listener?.isListening() ? this.epoch : undefined;
  }

  /** Starts listening; resolves once the first attempt succeeded or failed (the listener then keeps retrying). */
  async start(): Promise<void> {
    await this.listener?.start();
  }

  /** Stops listening (on server shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.checkTimer);
    await this.listener?.close();
  }

  /**
   * Calls `revoked` once if the key is revoked while watched (an open
   * stream: authenticated when it started, it must not outlive its key).
   * Heard at once on every replica through the revocation listener; while
   * that is not listening, the watched keys are checked in the database
   * every STREAM_KEY_CHECK_MS (and once when it listens again). Answers the
   * function that stops watching.
   */
  watch(keyId: string, revoked: () => void): () => void {
    let set = this.watchers.get(keyId);
    if (!set) this.watchers.set(keyId, (set = new Set()));
    set.add(revoked);
    if (this.generation() === undefined) this.scheduleCheck(STREAM_KEY_CHECK_MS);
    return () => {
      set.delete(revoked);
      if (set.size === 0 && this.watchers.get(keyId) === set) this.watchers.delete(keyId);
    };
  }

  private revoked(keyId: string): void {
    const set = this.watchers.get(keyId);
    if (!set) return;
    this.watchers.delete(keyId);
    for (const revoked of set) revoked();
  }

  /**
   * Checks the watched keys after `delayMs`, and again every
   * STREAM_KEY_CHECK_MS while not listening. A check already due no later
   * stays as it is (streams opening one after another pushed it back, for
   * as long as they kept coming: found in review).
   */
  private scheduleCheck(delayMs: number): void {
    if (this.closed || this.watchers.size === 0) return;
    if (this.checkTimer !== undefined && delayMs > 0) return;
    clearTimeout(this.checkTimer);
    this.checkTimer = setTimeout(() => {
      this.checkTimer = undefined;
      void this.checkWatched().finally(() => {
        if (this.generation() === undefined) this.scheduleCheck(STREAM_KEY_CHECK_MS);
      });
    }, delayMs);
    this.checkTimer.unref();
  }

  private async checkWatched(): Promise<void> {
    const keyIds = [...this.watchers.keys()];
    if (keyIds.length === 0) return;
    try {
      const { rows } = await preparedQuery<{ id: string }>(
        this.manager,
        'api_key_live',
        `SELECT id FROM api_keys WHERE id = ANY ($1::uuid[]) AND revoke_time IS NULL`,
        [keyIds],
      );
      const live = new Set(rows.map((r) => r.id));
      for (const keyId of keyIds) if (!live.has(keyId)) this.revoked(keyId);
    } catch {
      // The database does not answer: the next check tries again (the streams' own reads fail meanwhile).
    }
  }

  /** The principal of a key, or undefined when it is malformed, unknown or revoked. */
  async authenticate(apiKey: string): Promise<Principal | undefined> {
    const parsed = parseApiKey(apiKey);
    if (!parsed) return undefined;
    const { keyId } = parsed;
    const listening = this.generation();
    const now = Date.now();
    let entry = listening === undefined ? undefined : this.cache.get(keyId);
    if (entry && entry.expires > now) this.onLookup?.(true);
    else {
      this.onLookup?.(false);
      const key = await this.lookUp(keyId, listening);
      if (!key) {
        this.cache.delete(keyId);
        return undefined;
      }
      entry = { key, expires: now + this.cacheMs };
      // Remember it only if the listener listened throughout the lookup: a
      // revocation (or a lost connection) meanwhile may have come after the
      // row was read, and its notification has already been handled.
      if (listening !== undefined && this.generation() === listening) {
        if (this.cache.size >= MAX_CACHED_KEYS) this.cache.clear();
        this.cache.set(keyId, entry);
      }
    }
    return timingSafeEqual(entry.key.secretHash, parsed.secretHash) ? entry.key.principal : undefined;
  }

  /**
   * The key as the database has it. The calls that miss it in the cache
   * while a lookup of it begun in the same generation is in flight share
   * that lookup: when a cached key expired, every call in flight looked it
   * up at once (32-64 queries every 5 s under the bench's add). A call
   * after a revocation was heard (a new generation) looks it up anew, since
   * a lookup begun before may have read the key before it was revoked; and
   * so does every call while nothing is listening. (Until a revocation is
   * heard, a call sharing a lookup is as late as a cached key would be.)
   */
  private lookUp(keyId: string, listening: number | undefined): Promise<StoredKey | undefined> {
    if (listening === undefined) return findKey(this.manager, keyId);
    const inFlight = this.lookups.get(keyId);
    if (inFlight !== undefined && inFlight.generation === listening) return inFlight.key;
    const lookup = { generation: listening, key: findKey(this.manager, keyId) };
    this.lookups.set(keyId, lookup);
    const done = () => {
      if (this.lookups.get(keyId) === lookup) this.lookups.delete(keyId);
    };
    lookup.key.then(done, done);
    return lookup.key;
  }
}

async function findKey(manager: EntityManager, keyId: string): Promise<StoredKey | undefined> {
  const rows: Array<{
    secret_hash: Buffer;
    name: string;
    scopes: Scope[];
    tenant_id: string;
    slug: string;
    default_currency: string;
    multi_currency: boolean;
  }> = (
    await preparedQuery<never>(
      manager,
      'api_key_find',
      `SELECT k.secret_hash, k.name, k.scopes, t.id AS tenant_id, t.slug, t.default_currency, t.multi_currency
       FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
      WHERE k.id = $1 AND k.revoke_time IS NULL`,
      [keyId],
    )
  ).rows;
  const row = rows[0];
  if (!row) return undefined;
  return {
    secretHash: row.secret_hash,
    principal: {
      tenantId: row.tenant_id,
      tenantSlug: row.slug,
      defaultCurrency: row.default_currency,
      multiCurrency: row.multi_currency,
      keyName: row.name,
      keyId,
      scopes: new Set(row.scopes),
    },
  };
}
