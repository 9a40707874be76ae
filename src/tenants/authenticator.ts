import { timingSafeEqual } from 'node:crypto';
import type { EntityManager } from 'typeorm';
import { preparedQuery } from '../db/prepared-query';
import type { Scope } from './api-key.entity';
import { parseApiKey } from './api-key.secret';
import type { Principal } from './principal';

interface StoredKey {
  secretHash: Buffer;
  principal: Principal;
}

/**
 * Resolves API keys to principals, comparing the secret's hash in constant
 * time. A key found in the database is remembered for `cacheMs`, so most
 * calls cost no query; a revoked key therefore stops working within
 * `cacheMs` on every replica. Unknown keys are never cached.
 */
export class Authenticator {
  private readonly cache = new Map<string, { key: StoredKey; expires: number }>();

  constructor(
    private readonly manager: EntityManager,
    private readonly cacheMs: number,
  ) {}

  /** The principal of a key, or undefined when it is malformed, unknown or revoked. */
  async authenticate(apiKey: string): Promise<Principal | undefined> {
    const parsed = parseApiKey(apiKey);
    if (!parsed) return undefined;
    const { keyId } = parsed;
    const now = Date.now();
    let entry = this.cache.get(keyId);
    if (!entry || entry.expires <= now) {
      const key = await findKey(this.manager, keyId);
      if (!key) {
        this.cache.delete(keyId);
        return undefined;
      }
      entry = { key, expires: now + this.cacheMs };
      if (this.cacheMs > 0) {
        if (this.cache.size >= 10_000) this.cache.clear();
        this.cache.set(keyId, entry);
      }
    }
    return timingSafeEqual(entry.key.secretHash, parsed.secretHash) ? entry.key.principal : undefined;
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
      scopes: new Set(row.scopes),
    },
  };
}
