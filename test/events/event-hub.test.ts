import { expect } from 'chai';
import pg from 'pg';
import pino from 'pino';
import type { DataSource } from 'typeorm';
import type { EventBatch } from '../../src/events/event.repository';
import { EventHub, EVENTS_CHANNEL, SHARED_READ_MS } from '../../src/events/event-hub';
import { createLogger } from '../../src/logger';
import { openTestDataSource, testDatabaseUrl } from '../support/database';
import { eventually } from '../support/eventually';
import { newTenant } from '../support/tenant';

const batch = (horizon: bigint): EventBatch => ({ events: [], horizon, waitingXid: undefined, expired: false });

describe('EventHub', () => {
  let dataSource: DataSource;
  let hub: EventHub;

  before(async () => {
    dataSource = await openTestDataSource(2);
    hub = new EventHub(dataSource, createLogger('silent'), 'credits-events-listener (hub test)');
    await hub.start();
  });
  after(async () => {
    await hub.close();
    await dataSource.destroy();
  });

  it('wakes the readers of the tenant a commit names, and no other', async () => {
    const [a, b] = [await newTenant(dataSource), await newTenant(dataSource)];
    const woken: string[] = [];
    const off = [hub.subscribe(a.id, { wake: () => woken.push('a') }), hub.subscribe(b.id, { wake: () => woken.push('b') })];
    await dataSource.query(`SELECT pg_notify($1, $2)`, [EVENTS_CHANNEL, a.id]);
    for (let i = 0; i < 100 && woken.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    expect(woken).to.deep.equal(['a']);
    off.forEach((unsubscribe) => unsubscribe());
  });

  it('shares one read among readers that want it at once, and tells a reader that joined it after a wake-up to read again', async () => {
    const tenant = await newTenant(dataSource);
    let woken = 0;
    const off = hub.subscribe(tenant.id, { wake: () => woken++ });
    let reads = 0;
    let finish!: (b: EventBatch) => void;
    const read = () => {
      reads++;
      return new Promise<EventBatch>((resolve) => (finish = resolve));
    };
    const first = hub.read('k', read);
    const together = hub.read('k', read); // no wake-up since the read began: it sees what this reader wants
    await dataSource.query(`SELECT pg_notify($1, $2)`, [EVENTS_CHANNEL, tenant.id]); // a commit after the read began...
    for (let i = 0; i < 100 && woken === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const late = hub.read('k', read); // ...so a reader joining now may miss it
    finish(batch(42n));
    const answers = await Promise.all([first, together, late]);
    expect(reads, 'one statement').to.equal(1);
    expect(answers.map((a) => [a.batch.horizon, a.stale])).to.deep.equal([
      [42n, false],
      [42n, false],
      [42n, true],
    ]);
    const next = hub.read('k', read); // done, found nothing, and a wake-up came since: the next one reads afresh
    expect(reads).to.equal(2);
    finish(batch(43n));
    expect((await next).batch.horizon).to.equal(43n);
    off();
  });

  it('shares a completed read with readers that come late (for SHARED_READ_MS), telling those woken since it began to read again', async () => {
    const tenant = await newTenant(dataSource);
    let woken = 0;
    const off = hub.subscribe(tenant.id, { wake: () => woken++ });
    let reads = 0;
    const found = (horizon: bigint): EventBatch => ({ ...batch(horizon), events: [{ id: `e${horizon}` } as unknown as EventBatch['events'][number]] });
    const read = (horizon: bigint) => () => {
      reads++;
      return Promise.resolve(found(horizon));
    };
    const first = await hub.read('late', read(1n));
    const late = await hub.read('late', read(2n)); // no wake-up since: the same batch, not stale
    expect([reads, late.batch, late.stale]).to.deep.equal([1, first.batch, false]);
    await dataSource.query(`SELECT pg_notify($1, $2)`, [EVENTS_CHANNEL, tenant.id]);
    for (let i = 0; i < 100 && woken === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const afterWake = await hub.read('late', read(3n)); // it found events: still handed out (the reader moves past them), but stale
    expect([reads, afterWake.batch, afterWake.stale]).to.deep.equal([1, first.batch, true]);
    await new Promise((r) => setTimeout(r, SHARED_READ_MS + 50));
    const later = await hub.read('late', read(4n)); // too old: read afresh
    expect([reads, later.batch.horizon, later.stale]).to.deep.equal([2, 4n, false]);
    off();
  });
  it('warns, naming it, of a transaction on another database of the server that holds readers back', async () => {
    const lines: Array<{ msg: string; xid?: string; holder?: { database: string; application_name: string; pid: number } }> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const held = new EventHub(dataSource, logger, 'credits-events-listener (held test)', { heldWarningMs: 200 });
    await held.start();
    const url = new URL(await testDatabaseUrl());
    url.pathname = '/postgres';
    const other = new pg.Client({ connectionString: url.toString(), application_name: 'a long writer elsewhere' });
    await other.connect();
    try {
      await other.query('BEGIN');
      const [{ xid }] = (await other.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid')).rows;
      const off = held.subscribe('00000000-0000-4000-8000-000000000000', { wake: () => {}, waitingXid: BigInt(xid!) });
      held.watchHorizon();
      const warning = await eventually(2_000, async () => lines.find((l) => l.holder), (found) => found !== undefined);
      expect(warning?.msg).to.contain('held back by a transaction');
      expect(warning?.xid).to.equal(xid);
      expect(warning?.holder).to.include({ database: 'postgres', application_name: 'a long writer elsewhere', pid: (other as unknown as { processID: number }).processID });
      off();
    } finally {
      await other.query('ROLLBACK').catch(() => {});
      await other.end();
      await held.close();
    }
  });
});
