import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { Authenticator } from '../../src/tenants/authenticator';
import { revokeApiKey } from '../../src/tenants/tenants.service';
import { openTestDataSource } from '../support/database';
import { newTenant } from '../support/tenant';

describe('Authenticator key cache', () => {
  let dataSource: DataSource;

  before(async () => {
    dataSource = await openTestDataSource(2);
  });
  after(() => dataSource.destroy());

  it('remembers a key for the cache time, then sees its revocation', async () => {
    const tenant = await newTenant(dataSource);
    const authenticator = new Authenticator(dataSource.manager, 300);
    expect((await authenticator.authenticate(tenant.rwKey))?.keyName).to.equal('rw-key');
    await revokeApiKey(dataSource, { tenantSlug: tenant.slug, name: 'rw-key' });
    // Within the cache time the revoked key still works (documented trade-off)...
    expect((await authenticator.authenticate(tenant.rwKey))?.keyName).to.equal('rw-key');
    await new Promise((r) => setTimeout(r, 350));
    // ...after it, never again.
    expect(await authenticator.authenticate(tenant.rwKey)).to.equal(undefined);
    // Without a cache the revocation takes effect at once.
    expect(await new Authenticator(dataSource.manager, 0).authenticate(tenant.readKey)).to.not.equal(undefined);
  });

  it('checks the secret on every call, cached or not', async () => {
    const tenant = await newTenant(dataSource);
    const authenticator = new Authenticator(dataSource.manager, 60_000);
    expect(await authenticator.authenticate(tenant.rwKey)).to.not.equal(undefined);
    const forged = tenant.rwKey.slice(0, -3) + (tenant.rwKey.endsWith('AAA') ? 'BBB' : 'AAA');
    expect(await authenticator.authenticate(forged)).to.equal(undefined);
    expect(await authenticator.authenticate('ck_nope')).to.equal(undefined);
  });
});
