import type { DataSource, EntityManager } from 'typeorm';
import { isKnownCurrency } from '../money/currencies';
import { ApiKeyEntity, SCOPES, type Scope } from './api-key.entity';
import { newApiKey } from './api-key.secret';
import { API_KEY_REVOKED_CHANNEL } from './authenticator';
import { TenantEntity } from './tenant.entity';

/** Problems of operator commands (the CLI), not of gRPC callers. */
export class TenantAdminError extends Error {}

const SLUG = /^[a-z0-9][a-z0-9-]{0,62}$/;
const KEY_NAME = /^[A-Za-z0-9_.@:-]{1,100}$/;

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
    const { keyId, apiKey, secretHash } = newApiKey();
    const key = await repo.save(repo.create({ id: keyId, tenantId: tenant.id, name: input.name, secretHash, scopes: input.scopes, revokeTime: null }));
    return { key, secret: apiKey };
  });
}

/**
 * Revokes the tenant's active key of that name. The same transaction notifies
 * every server's revocation listener (delivered when it commits), so each
 * forgets the key at once instead of when its cache entry expires.
 */
export async function revokeApiKey(dataSource: DataSource, input: { tenantSlug: string; name: string }): Promise<number> {
  return dataSource.transaction(async (manager) => {
    const tenant = await findTenant(manager, input.tenantSlug);
    const revoked: unknown[] = await manager.query(
      `WITH revoked AS (
         UPDATE api_keys SET revoke_time = clock_timestamp()
          WHERE tenant_id = $1 AND name = $2 AND revoke_time IS NULL
         RETURNING id)
       SELECT pg_notify($3, id::text) FROM revoked`,
      [tenant.id, input.name, API_KEY_REVOKED_CHANNEL],
    );
    if (revoked.length === 0) throw new TenantAdminError(`tenant "${tenant.slug}" has no active key named "${input.name}"`);
    return revoked.length;
  });
}
