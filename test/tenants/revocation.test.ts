import { execFile } from 'node:child_process';
import path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { freePort, spawnServer, type ChildServer } from '../support/child-server';
import { testDatabaseUrl } from '../support/database';
import { promotionalCredits, startTestServer, type TestServer } from '../support/server';
import { decodeError } from '../support/status';
import { newTenant } from '../support/tenant';
import { eventsClient } from '../support/events';
import { revokeApiKey } from '../../src/tenants/tenants.service';

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'credits.js');
/** Both servers remember a valid key this long: only the pushed revocation can explain a refusal within a second. */
const CACHE_MS = 60_000;

type Client = ReturnType<typeof promotionalCredits>;

/** Calls until the key is refused (UNAUTHENTICATED) or `deadline` passes; answers whether it was refused in time. */
async function refusedBy(client: Client, deadline: number): Promise<boolean> {
  for (;;) {
    try {
      await client.getCustomerBalance({ customerId: 'c' });
    } catch (err) {
      const decoded = decodeError(err as ServiceError);
      if (decoded.code === status.UNAUTHENTICATED && decoded.reason === 'API_KEY_INVALID') return true;
      throw err;
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('API key revocation reaches every replica', function () {
  this.timeout(120_000);
  let inProcess: TestServer;
  let child: ChildServer;

  before(async () => {
    inProcess = await startTestServer({ authCacheMs: CACHE_MS });
    child = await spawnServer(await testDatabaseUrl(), await freePort(), { CREDITS_AUTH_CACHE_MS: String(CACHE_MS) });
  });
  after(async () => {
    await inProcess?.close();
    if (child) {
      child.process.kill('SIGTERM');
      // Shutdown closes the listener too: a connection left open would keep the process alive.
      expect(await child.exited, child.output()).to.deep.equal({ code: 0, signal: null });
    }
  });

  it('refuses a key on both servers within one second of `credits api-key revoke` returning, though both cache keys for a minute', async () => {
    const tenant = await newTenant(inProcess.dataSource);
    const addresses = [inProcess.address, child.address];
    const writers = addresses.map((address) => promotionalCredits(address, tenant.rwKey));
    const readers = addresses.map((address) => promotionalCredits(address, tenant.readKey));
    try {
      for (const client of [...writers, ...readers]) await client.getCustomerBalance({ customerId: 'c' });
      // Both caches are in use: a revocation no one is told of goes unseen.
      await inProcess.dataSource.query(`UPDATE api_keys SET revoke_time = now() WHERE tenant_id = $1 AND name = 'read-key'`, [tenant.id]);
      for (const client of readers) await client.getCustomerBalance({ customerId: 'c' });

      const databaseUrl = await testDatabaseUrl();
      const revoke = await new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile(
          process.execPath,
          [BIN, 'api-key', 'revoke', '--tenant', tenant.slug, '--name', 'rw-key'],
          { env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent' }, timeout: 30_000 },
          (err, _stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }),
        ),
      );
      const returned = Date.now();
      expect(revoke.code, revoke.stderr).to.equal(0);
      const refused = await Promise.all(writers.map((client) => refusedBy(client, returned + 1000)));
      expect(refused, 'refused within 1 s by [in-process server, credits serve]').to.deep.equal([true, true]);
    } finally {
      for (const client of [...writers, ...readers]) client.close();
    }
  });

  it('ends the streams opened with a key on both servers when the key is revoked (UNAUTHENTICATED), and not those of other keys', async () => {
    const tenant = await newTenant(inProcess.dataSource);
    const addresses = [inProcess.address, child.address];
    const revokedReaders = addresses.map((address) => eventsClient(address, tenant.readKey));
    const otherReaders = addresses.map((address) => eventsClient(address, tenant.rwKey));
    try {
      const doomed = revokedReaders.map((client) => client.stream({ liveOnly: true }));
      const kept = otherReaders.map((client) => client.stream({ liveOnly: true }));
      await Promise.all([...doomed, ...kept].map((s) => s.headers));
      await revokeApiKey(inProcess.dataSource, { tenantSlug: tenant.slug, name: 'read-key' });
      const ends = await Promise.all(doomed.map(async (s) => decodeError((await s.finished(5_000))!)));
      expect(ends.map((e) => `${status[e.code]} ${e.reason}`)).to.deep.equal(['UNAUTHENTICATED API_KEY_INVALID', 'UNAUTHENTICATED API_KEY_INVALID']);
      // The other key's streams go on and still get the tenant's events.
      await promotionalCredits(inProcess.address, tenant.rwKey).addPromotionalCredits({ customerId: 'after-revoke', amount: 1n, currencyCode: 'USD', description: 'x' });
      for (const s of kept) expect((await s.until((events) => events.length > 0, 5_000))[0]!.customerId).to.equal('after-revoke');
      for (const s of kept) s.cancel();
    } finally {
      for (const client of [...revokedReaders, ...otherReaders]) client.close();
    }
  });
});
