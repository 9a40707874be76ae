import { expect } from 'chai';
import { createCreditsClient, CreditsError, type CreditsClient } from '../../client/src';
import type { TestServer } from '../support/server';
import type { TestTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

/** Awaits a call that must fail and answers its CreditsError. */
export async function rejection(call: Promise<unknown>): Promise<CreditsError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the call should have failed').to.be.instanceOf(CreditsError);
  return err as CreditsError;
}

export interface CreditsClientSuite {
  readonly server: TestServer;
  readonly tenant: TestTenant;
  /** The published client (client/src) with the tenant's read+write key, made before each test and closed after it. */
  readonly client: CreditsClient;
}

/** useTenantClients() with the published client in place of the promisified generated ones. */
export function useCreditsClient(): CreditsClientSuite {
  const t = useTenantClients();
  let client: CreditsClient | undefined;
  beforeEach(() => {
    client = createCreditsClient({ address: t.server.address, apiKey: t.tenant.rwKey });
  });
  afterEach(() => client?.close());
  return {
    get server() {
      return t.server;
    },
    get tenant() {
      return t.tenant;
    },
    get client() {
      if (client === undefined) throw new Error('useCreditsClient: use it inside hooks and tests');
      return client;
    },
  };
}
