import { randomBytes } from 'node:crypto';
import type { DataSource } from 'typeorm';
import type { Principal } from '../../src/tenants/principal';
import { createApiKey, createTenant } from '../../src/tenants/tenants.service';

export interface TestTenant {
  slug: string;
  id: string;
  /** read+write key, named "rw-key" (it is the done_by of its writes). */
  rwKey: string;
  readKey: string;
  writeKey: string;
}

/** A fresh tenant with three keys; every test makes its own, so tests never see each other's data. */
export async function newTenant(dataSource: DataSource, options: { currency?: string; multiCurrency?: boolean } = {}): Promise<TestTenant> {
  const slug = `t-${randomBytes(6).toString('hex')}`;
  const tenant = await createTenant(dataSource, { slug, currency: options.currency ?? 'USD', multiCurrency: options.multiCurrency ?? true });
  const key = async (name: string, scopes: Array<'read' | 'write'>) => (await createApiKey(dataSource, { tenantSlug: slug, name, scopes })).secret;
  return {
    slug,
    id: tenant.id,
    rwKey: await key('rw-key', ['read', 'write']),
    readKey: await key('read-key', ['read']),
    writeKey: await key('write-key', ['write']),
  };
}

/** The tenant's read+write key as a use case sees its caller (tests that call a service directly, past the gRPC layer). */
export function rwPrincipal(tenant: Pick<TestTenant, 'id' | 'slug'>): Principal {
  return {
    tenantId: tenant.id,
    tenantSlug: tenant.slug,
    defaultCurrency: 'USD',
    multiCurrency: true,
    keyName: 'rw-key',
    keyId: '00000000-0000-4000-8000-000000000001',
    scopes: new Set(['read', 'write']),
  };
}
