import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import pino from 'pino';
import type { DataSource } from 'typeorm';
import { Authenticator, LISTENER_APPLICATION_NAME } from '../../src/tenants/authenticator';
import { parseApiKey } from '../../src/tenants/api-key.secret';
import { revokeApiKey } from '../../src/tenants/tenants.service';
import { freePort } from '../support/child-server';
import { openTestDataSource } from '../support/database';
import { newTenant, type TestTenant } from '../support/tenant';

interface LogLine {
  level: number;
  msg: string;
  retry_in_ms?: number;
}

/** A logger whose lines the test reads. */
function memoryLogger() {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

/** Polls `condition` every 10 ms; answers whether it held before `ms` passed. */
async function within(ms: number, condition: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('Authenticator: key cache and revocation listener', () => {
  let dataSource: DataSource;
  const started: Authenticator[] = [];

  /** An authenticator that would remember a key for a minute. */
  async function authenticator(options: Partial<ConstructorParameters<typeof Authenticator>[1]> = {}) {
    const { logger, lines } = memoryLogger();
    const auth = new Authenticator(dataSource, { cacheMs: 60_000, logger, ...options });
    started.push(auth);
    await auth.start();
    return { auth, lines };
  }

  /** Revokes a key behind every listener's back (no notification): only a cache in use still accepts it. */
  async function revokeUnannounced(tenant: TestTenant, name: string): Promise<void> {
    await dataSource.query('UPDATE api_keys SET revoke_time = now() WHERE tenant_id = $1 AND name = $2', [tenant.id, name]);
  }

  const name = async (auth: Authenticator, key: string) => (await auth.authenticate(key))?.keyName;

  before(async () => {
    dataSource = await openTestDataSource(4);
  });
  after(async () => {
    for (const auth of started) await auth.close();
    await dataSource.destroy();
  });

  it('forgets a key revoked with revokeApiKey within a second, though it remembers keys for a minute', async () => {
    const tenant = await newTenant(dataSource);
    const { auth } = await authenticator();
    expect(await name(auth, tenant.rwKey)).to.equal('rw-key');
    expect(await name(auth, tenant.readKey)).to.equal('read-key');
    // The cache is in use: a revocation no one is told of goes unseen.
    await revokeUnannounced(tenant, 'read-key');
    expect(await name(auth, tenant.readKey)).to.equal('read-key');

    await revokeApiKey(dataSource, { tenantSlug: tenant.slug, name: 'rw-key' });
    expect(await within(1000, async () => (await auth.authenticate(tenant.rwKey)) === undefined), 'refused within 1 s').to.equal(true);
    // Only the revoked key was forgotten.
    expect(await name(auth, tenant.readKey)).to.equal('read-key');
  });

  it('drops its cache when the listener connection is lost, checks the database until it listens again, and listens again', async () => {
    const tenant = await newTenant(dataSource);
    const { auth, lines } = await authenticator();
    expect(lines.filter((l) => l.msg.startsWith('listening for API key revocations'))).to.have.length(1);
    expect(await name(auth, tenant.readKey)).to.equal('read-key');
    expect(await name(auth, tenant.writeKey)).to.equal('write-key');
    await revokeUnannounced(tenant, 'read-key');
    expect(await name(auth, tenant.readKey), 'cached').to.equal('read-key');

    // Cut the listener's connection (this process's listeners, found by their application_name).
    const [{ terminated }]: Array<{ terminated: string }> = await dataSource.query(
      'SELECT count(pg_terminate_backend(pid)) AS terminated FROM pg_stat_activity WHERE application_name = $1',
      [LISTENER_APPLICATION_NAME],
    );
    expect(Number(terminated)).to.be.at.least(1);
    const lost = () => lines.find((l) => l.msg.startsWith('lost the connection listening for API key revocations'));
    expect(await within(10_000, async () => lost() !== undefined), 'the loss is logged').to.equal(true);
    expect(lost()).to.include({ level: 40, retry_in_ms: 100 });
    // Revocations sent while it was not listening are lost, so nothing cached is trusted any more.
    expect(await auth.authenticate(tenant.readKey), 'cache dropped').to.equal(undefined);

    const listening = () => lines.filter((l) => l.msg.startsWith('listening for API key revocations')).length === 2;
    expect(await within(10_000, async () => listening()), 'listens again').to.equal(true);
    // The new connection hears revocations of keys cached after it came back.
    expect(await name(auth, tenant.writeKey)).to.equal('write-key');
    await revokeApiKey(dataSource, { tenantSlug: tenant.slug, name: 'write-key' });
    expect(await within(1000, async () => (await auth.authenticate(tenant.writeKey)) === undefined), 'refused within 1 s').to.equal(true);
  });

  it('tells the watchers of a key revoked with revokeApiKey (its open streams end), and no others', async () => {
    const tenant = await newTenant(dataSource);
    const { auth } = await authenticator();
    const told: string[] = [];
    const rw = parseApiKey(tenant.rwKey)!.keyId;
    const read = parseApiKey(tenant.readKey)!.keyId;
    auth.watch(rw, () => told.push('rw stream 1'));
    auth.watch(rw, () => told.push('rw stream 2'));
    const unwatched = auth.watch(rw, () => told.push('rw stream ended before'));
    unwatched();
    auth.watch(read, () => told.push('read stream'));
    await revokeApiKey(dataSource, { tenantSlug: tenant.slug, name: 'rw-key' });
    expect(await within(1000, async () => told.length === 2), 'told within 1 s').to.equal(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(told).to.deep.equal(['rw stream 1', 'rw stream 2']);
  });

  it('checks the watched keys in the database every second while it cannot listen', async () => {
    const tenant = await newTenant(dataSource);
    const nobody = await freePort();
    const { auth } = await authenticator({ listenerConnection: { host: '127.0.0.1', port: nobody, user: 'credits', database: 'credits' } });
    let told = 0;
    auth.watch(parseApiKey(tenant.rwKey)!.keyId, () => told++);
    await new Promise((r) => setTimeout(r, 1500));
    expect(told, 'a live key').to.equal(0);
    await revokeUnannounced(tenant, 'rw-key');
    expect(await within(3000, async () => told === 1), 'told by a check').to.equal(true);
  });

  it('keeps checking every second while streams of other keys keep opening', async () => {
    const tenant = await newTenant(dataSource);
    const nobody = await freePort();
    const { auth } = await authenticator({ listenerConnection: { host: '127.0.0.1', port: nobody, user: 'credits', database: 'credits' } });
    let told = 0;
    auth.watch(parseApiKey(tenant.rwKey)!.keyId, () => told++);
    await revokeUnannounced(tenant, 'rw-key');
    // Another key's stream opens and ends every 300 ms (each watch used to push the pending check back).
    const other = parseApiKey(tenant.readKey)!.keyId;
    const churn = setInterval(() => auth.watch(other, () => undefined)(), 300);
    try {
      expect(await within(3000, async () => told === 1), 'told by a check within 3 s').to.equal(true);
    } finally {
      clearInterval(churn);
    }
  });

  it('never uses its cache while it cannot listen', async () => {
    const tenant = await newTenant(dataSource);
    const nobody = await freePort();
    const { auth, lines } = await authenticator({ listenerConnection: { host: '127.0.0.1', port: nobody, user: 'credits', database: 'credits' } });
    expect(lines.map((l) => [l.level, l.msg])).to.deep.include([40, 'cannot listen for API key revocations yet: every call checks the database meanwhile']);
    expect(await name(auth, tenant.rwKey)).to.equal('rw-key');
    await revokeUnannounced(tenant, 'rw-key');
    expect(await auth.authenticate(tenant.rwKey)).to.equal(undefined);
  });

  it('looks a key up once for the calls that miss it at once, and anew for a call after a revocation', async () => {
    const tenant = await newTenant(dataSource);
    // A pool with room for every call's own lookup, as under load.
    const pool = await openTestDataSource(8);
    const { logger } = memoryLogger();
    const auth = new Authenticator(pool, { cacheMs: 60_000, logger });
    const locker = dataSource.createQueryRunner();
    try {
      await auth.start();
      // Lookups wait on the lock, so the ones begun can be counted.
      await locker.connect();
      await locker.startTransaction();
      await locker.query('LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE');
      const [{ pid: lockerPid }]: Array<{ pid: number }> = await locker.query('SELECT pg_backend_pid() AS pid');
      // Asked outside the locker's transaction, which would see its first snapshot of pg_stat_activity throughout.
      const waiting = async () => {
        const [{ n }]: Array<{ n: string }> = await dataSource.query('SELECT count(*) AS n FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))', [lockerPid]);
        return Number(n);
      };
      const calls = Array.from({ length: 8 }, () => auth.authenticate(tenant.rwKey));
      expect(await within(5000, async () => (await waiting()) >= 1), 'a lookup waits').to.equal(true);
      await new Promise((r) => setTimeout(r, 300));
      expect(await waiting(), 'one lookup for 8 calls').to.equal(1);
      // A revocation (of another key) begins a new generation: a call after
      // it does not trust a lookup begun before it. Sent from outside the
      // locker's transaction: a NOTIFY goes out at commit.
      const other = randomUUID();
      const heard = new Promise<void>((resolve) => auth.watch(other, resolve));
      await dataSource.query(`SELECT pg_notify('credits_api_key_revoked', $1)`, [other]);
      await heard;
      calls.push(auth.authenticate(tenant.rwKey), auth.authenticate(tenant.rwKey));
      expect(await within(5000, async () => (await waiting()) >= 2), 'a second lookup waits').to.equal(true);
      await new Promise((r) => setTimeout(r, 300));
      expect(await waiting(), 'one more lookup for the 2 calls after it').to.equal(2);
      await locker.commitTransaction();
      expect((await Promise.all(calls)).map((p) => p?.keyName)).to.deep.equal(Array(10).fill('rw-key'));
    } finally {
      if (locker.isTransactionActive) await locker.rollbackTransaction();
      await locker.release();
      await auth.close();
      await pool.destroy();
    }
  });

  it('checks the secret on every call, cached or not', async () => {
    const tenant = await newTenant(dataSource);
    const { auth } = await authenticator();
    expect(await auth.authenticate(tenant.rwKey)).to.not.equal(undefined);
    const forged = tenant.rwKey.slice(0, -3) + (tenant.rwKey.endsWith('AAA') ? 'BBB' : 'AAA');
    expect(await auth.authenticate(forged)).to.equal(undefined);
    expect(await auth.authenticate('ck_nope')).to.equal(undefined);
  });
});
