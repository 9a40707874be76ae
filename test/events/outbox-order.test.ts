import { expect } from 'chai';
import type { QueryRunner } from 'typeorm';
import { appendEvents } from '../../src/events/outbox';
import { eventsClient, listAll, storedEventIds, type EventsClient } from '../support/events';
import { replicaServer } from '../support/server';
import { useTenantClients } from '../support/tenant-clients';

const base = { currencyCode: 'USD', description: 'order test' };

/**
 * The outbox trap: positions are taken when rows are written, transactions
 * commit in any order, so "everything after the last position I saw" skips
 * an event whose transaction commits after a later one. Each test holds a
 * transaction open on purpose, so the outcome does not depend on timing.
 */
describe('events: one order, no gaps, no repeats', function () {
  this.timeout(120_000);
  const t = useTenantClients({ replica: true });
  let events: EventsClient;
  const open: QueryRunner[] = [];

  beforeEach(() => {
    events = eventsClient(t.server.address, t.tenant.readKey);
  });
  afterEach(async () => {
    events.close();
    for (const runner of open.splice(0)) {
      if (runner.isReleased) continue;
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      await runner.release();
    }
  });

  /** A transaction of its own, left open until the test commits it. */
  async function begin(): Promise<QueryRunner> {
    const runner = t.server.dataSource.createQueryRunner();
    open.push(runner);
    await runner.connect();
    await runner.startTransaction();
    return runner;
  }
  const append = (runner: QueryRunner, customerId: string) =>
    appendEvents(runner.manager, [{ tenantId: t.tenant.id, type: 'CUSTOMER_CREDIT_CREATED', customerId, payload: { kind: 'customer_credit', json: { customerId } } }]);
  /** The position an event took (its own transaction sees it uncommitted). */
  const position = async (reader: { query(text: string, values: unknown[]): Promise<unknown> }, customerId: string) =>
    BigInt(((await reader.query(`SELECT position::text FROM events WHERE tenant_id = $1 AND customer_id = $2`, [t.tenant.id, customerId])) as Array<{ position: string }>)[0]!.position);

  for (const variant of ['the open transaction wrote first (smaller position)', 'the open transaction began first but wrote after (larger position)'] as const) {
    it(`never hands out a later event before an earlier transaction ends, then both in order, once: ${variant}`, async () => {
      const stream = events.stream();
      await stream.headers;
      const first = await begin();
      if (variant.startsWith('the open transaction wrote first')) await append(first, 'first');
      else await first.query('SELECT pg_current_xact_id()'); // takes its transaction id now
      const later = await begin();
      await append(later, 'later');
      if (!variant.startsWith('the open transaction wrote first')) await append(first, 'first');
      await later.commitTransaction();
      const [firstPosition, laterPosition] = [await position(first, 'first'), await position(t.server.dataSource, 'later')];
      expect(firstPosition < laterPosition, 'positions as the variant says').to.equal(variant.startsWith('the open transaction wrote first'));

      // "later" is committed and "first" is not: a reader must not go past "first"'s place yet.
      const before = await events.listEvents({ pageSize: 100 });
      expect(before.events.map((e) => e.customerId), 'readable while the earlier transaction is open').to.deep.equal([]);
      await new Promise((r) => setTimeout(r, 300)); // what the stream would have sent by now
      expect(stream.events.map((e) => e.customerId), 'streamed while the earlier transaction is open').to.deep.equal([]);

      await first.commitTransaction();
      const after = await events.listEvents({ pageSize: 100, afterCursor: before.nextCursor });
      expect(after.events.map((e) => e.customerId)).to.deep.equal(['first', 'later']);
      expect((await events.listEvents({ afterCursor: after.nextCursor })).events, 'nothing twice').to.deep.equal([]);
      await stream.until((got) => got.length >= 2, 1_000, 'delivery within 1 s of the commit');
      await new Promise((r) => setTimeout(r, 100));
      expect(stream.events.map((e) => e.customerId)).to.deep.equal(['first', 'later']);
      stream.cancel();
    });
  }

  it('delivers within 1 s of the end of an older transaction that wrote no event of the tenant (no notification tells of it)', async () => {
    const stream = events.stream();
    await stream.headers;
    const older = await begin();
    await older.query('SELECT pg_current_xact_id()'); // holds back the horizon, notifies nothing when it ends
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'held', amount: 10n });
    await new Promise((r) => setTimeout(r, 300));
    expect(stream.events, 'held back by the older transaction').to.deep.equal([]);
    await older.commitTransaction();
    await stream.until((got) => got.length === 1, 1_000, 'delivery within 1 s of the older transaction ending');
    stream.cancel();
  });

  it('gives a reader that resumes from any cursor every later event exactly once, under parallel writes to two processes with transactions committing out of order', async () => {
    // A stream from the beginning on the other process follows it all as it happens.
    const follower = eventsClient((await replicaServer()).address, t.tenant.readKey);
    const stream = follower.stream();
    await stream.headers;
    const WORKERS = 8;
    const CALLS = 25;
    const workers = Array.from({ length: WORKERS }, async (_, w) => {
      const clients = w % 2 === 0 ? t.promotionalCredits : t.replica.promotionalCredits;
      for (let i = 0; i < CALLS; i++) {
        const customerId = `w${w}-${i % 3}`;
        if (i % 5 === 4) {
          // A transaction that writes first and commits late, while others commit.
          const runner = await begin();
          await append(runner, customerId);
          await new Promise((r) => setTimeout(r, Math.random() * 30));
          await runner.commitTransaction();
          await runner.release();
        } else if (i % 5 === 3) {
          await clients.holdPromotionalCredits({ ...base, customerId, amount: 1n });
        } else {
          await clients.addPromotionalCredits({ ...base, customerId, amount: 10n });
        }
      }
    });
    await Promise.all(workers);
    const stored = await storedEventIds(t.server.dataSource, t.tenant.id);
    expect(stored.length).to.equal(WORKERS * CALLS);

    const { events: all } = await listAll(events);
    expect(all.map((e) => e.id), 'ListEvents from the beginning').to.deep.equal(stored);
    for (let i = 0; i < all.length; i++) {
      const resumed = await listAll(events, { afterCursor: all[i]!.cursor });
      if (resumed.events.length !== all.length - i - 1 || resumed.events.some((e, k) => e.id !== all[i + 1 + k]!.id)) {
        expect(resumed.events.map((e) => e.id), `resumed after event ${i}`).to.deep.equal(stored.slice(i + 1));
      }
    }
    // A hang guard, not a delivery bound: the stream reads what many writers wrote.
    await stream.until((got) => got.length >= stored.length, 30_000, 'the stream on the replica');
    await new Promise((r) => setTimeout(r, 200));
    expect(stream.events.map((e) => e.id), 'streamed: each once, in order').to.deep.equal(stored);
    stream.cancel();
    follower.close();
  });
});
