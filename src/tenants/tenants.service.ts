import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { DataSource, EntityManager } from 'typeorm';
import { preparedQuery } from '../db/prepared-query';
import { isKnownCurrency } from '../money/currencies';
import { ApiKeyEntity, SCOPES, type Scope } from './api-key.entity';
import type { Principal } from './principal';
import { TenantEntity } from './tenant.entity';

/** Problems of operator commands (the CLI), not of gRPC callers. */
export class TenantAdminError extends Error {}

const SLUG = /^[a-z0-9][a-z0-9-]{0,62}$/;
const KEY_NAME = /^[A-Za-z0-9_.@:-]{1,100}$/;
// ck_<key id, 32 hex>_<secret, 43 base64url>
const API_KEY = /^ck_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;

export async function createTenant(
  dataSource: DataSource,
  input: { slug: string; currency: string; multiCurrency: boolean },
): Promise<TenantEntity> {
  if (!SLUG.test(input.slug)) {
    throw new TenantAdminError('tenant slug must be 1 to 63 characters of a-z, 0-9 and -, starting with a letter or digit');
  }
  if (!isKnownCurrency(input.currency)) {
    throw new TenantAdminError(`currency "${input.currency}" is not an ISO 4217 code with a minor unit (use upper case, e.g. USD)`);
  }
  const repo = dataSource.getRepository(TenantEntity);
  if (await repo.existsBy({ slug: input.slug })) throw new TenantAdminError(`tenant "${input.slug}" already exists`);
  return repo.save(repo.create({ slug: input.slug, defaultCurrency: input.currency, multiCurrency: input.multiCurrency }));
}

export async function findTenant(manager: EntityManager, slug: string): Promise<TenantEntity> {
  const tenant = await manager.getRepository(TenantEntity).findOneBy({ slug });
  if (!tenant) throw new TenantAdminError(`tenant "${slug}" does not exist`);
  return tenant;
}

export function parseScopes(text: string): Scope[] {
  const scopes = [...new Set(text.split(',').map((s) => s.trim()).filter((s) => s !== ''))];
  if (scopes.length === 0 || scopes.some((s) => !(SCOPES as readonly string[]).includes(s))) {
    throw new TenantAdminError(`scopes must be a comma-separated list of ${SCOPES.join(', ')}; got "${text}"`);
  }
  return scopes as Scope[];
}

/** Creates an API key and answers its secret, which is shown once and stored only hashed. */
export async function createApiKey(
  dataSource: DataSource,
  input: { tenantSlug: string; name: string; scopes: Scope[] },
): Promise<{ key: ApiKeyEntity; secret: string }> {
  if (!KEY_NAME.test(input.name)) {
    throw new TenantAdminError('key name must be 1 to 100 characters of A-Z, a-z, 0-9 and _ . @ : -');
  }
  return dataSource.transaction(async (manager) => {
    const tenant = await findTenant(manager, input.tenantSlug);
    const repo = manager.getRepository(ApiKeyEntity);
    const active = await repo
      .createQueryBuilder('k')
      .where('k.tenant_id = :t AND k.name = :n AND k.revoke_time IS NULL', { t: tenant.id, n: input.name })
      .getExists();
    if (active) throw new TenantAdminError(`tenant "${tenant.slug}" already has an active key named "${input.name}"; revoke it first`);
    const id = randomBytes(16).toString('hex');
    const secretPart = randomBytes(32).toString('base64url');
    const key = await repo.save(
      repo.create({ id: formatUuid(id), tenantId: tenant.id, name: input.name, secretHash: hashSecret(secretPart), scopes: input.scopes, revokeTime: null }),
    );
    return { key, secret: `ck_${id}_${secretPart}` };
  });
}

export async function revokeApiKey(dataSource: DataSource, input: { tenantSlug: string; name: string }): Promise<number> {
  return dataSource.transaction(async (manager) => {
    const tenant = await findTenant(manager, input.tenantSlug);
    const result = await manager
      .createQueryBuilder()
      .update(ApiKeyEntity)
      .set({ revokeTime: () => 'clock_timestamp()' })
      .where('tenant_id = :t AND name = :n AND revoke_time IS NULL', { t: tenant.id, n: input.name })
      .execute();
    if (!result.affected) throw new TenantAdminError(`tenant "${tenant.slug}" has no active key named "${input.name}"`);
    return result.affected;
  });
}

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
    const match = API_KEY.exec(apiKey);
    if (!match) return undefined;
    const keyId = formatUuid(match[1]!);
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
    return timingSafeEqual(entry.key.secretHash, hashSecret(match[2]!)) ? entry.key.principal : undefined;
  }
}

/** Resolves an API key without a cache (see Authenticator). */
export async function authenticate(manager: EntityManager, apiKey: string): Promise<Principal | undefined> {
  return new Authenticator(manager, 0).authenticate(apiKey);
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

function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

function formatUuid(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
