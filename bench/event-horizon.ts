import { Client, credentials, Metadata } from '@grpc/grpc-js';
import type { DataSource } from 'typeorm';
import { EventServiceService, StreamEventsRequest, type Event } from '../gen/credits/v1/event_service';
import { EventRepository } from '../src/events/event.repository';
import { appendEvents } from '../src/events/outbox';
import { startGrpcServer } from '../src/grpc/server';
import { createLogger } from '../src/logger';
import { createApiKey, createTenant } from '../src/tenants/tenants.service';
import { openBenchDatabase } from './database';
import { ms } from './format';
import { Histogram } from './histogram';

/**
 * What the outbox's horizon costs (see src/events/event.repository.ts): a
 * reader hands out an event only once every transaction older than it has
 * ended. Measures, on the bench database:
 *
 * 1. delivery lag of events committed every 50 ms to a stream, with no
 *    other transaction open, and while one transaction that took an xid
 *    stays open for HOLD_MS: each event then waits for it;
 * 2. the read itself: the reader's statement (horizon, watermark, one row
 *    more) against a naive "after position N" read of the same page, on a
 *    tenant with READ_EVENTS events.
 *
 * `npm run build && node dist/bench/event-horizon.js`
 */
const HOLD_MS = 2_000;
const EVENTS = 40;
const READ_EVENTS = 20_000;
const READS = 2_000;

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const db = await openBenchDatabase((msg) => console.log(msg));
  const logger = createLogger('warn');
  const server = await startGrpcServer({ dataSource: db.dataSource, logger }, { address: '127.0.0.1:0', authCacheMs: 5_000 });
  try {
    const slug = `horizon-${Date.now()}`;
    const tenant = await createTenant(db.dataSource, { slug, currency: 'USD', multiCurrency: false });
    const { secret } = await createApiKey(db.dataSource, { tenantSlug: slug, name: 'horizon', scopes: ['read'] });
    const write = (customerId: string) =>
      db.dataSource.transaction((m) => appendEvents(m, [{ tenantId: tenant.id, type: 'CUSTOMER_CREDIT_CREATED', customerId, payload: { kind: 'customer_credit', json: {} } }]));

    const lagOf = async (label: string, during: (writeAll: () => Promise<void>) => Promise<void>) => {
      const lag = new Histogram();
      const client = new Client(`127.0.0.1:${server.port}`, credentials.createInsecure());
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${secret}`);
      const m = EventServiceService.streamEvents;
      const call = client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, StreamEventsRequest.fromPartial({ liveOnly: true }), metadata, {});
      let received = 0;
      call.on('data', (event: Event) => {
        lag.record((Date.now() - event.createTime!.getTime()) * 1000);
        received++;
      });
      call.on('error', () => {});
      await new Promise((resolve) => call.once('metadata', resolve));
      await during(async () => {
        for (let i = 0; i < EVENTS; i++) {
          await write(`${label}-${i}`);
          await delay(50);
        }
      });
      for (const end = Date.now() + 10_000; received < EVENTS && Date.now() < end; ) await delay(10);
      call.cancel();
      client.close();
      console.log(`${label}: ${received}/${EVENTS} events, delivery lag p50 ${ms(lag.quantile(0.5))} ms, p99 ${ms(lag.quantile(0.99))} ms, max ${ms(lag.max)} ms`);
    };

    await lagOf('no other transaction open', (writeAll) => writeAll());
    await lagOf(`a transaction holding an xid open for ${HOLD_MS} ms`, async (writeAll) => {
      const runner = db.dataSource.createQueryRunner();
      await runner.connect();
      await runner.startTransaction();
      await runner.query('SELECT pg_current_xact_id()');
      const writing = writeAll();
      await delay(HOLD_MS);
      await runner.commitTransaction();
      await runner.release();
      await writing;
    });

    await readCost(db.dataSource, tenant.id);
  } finally {
    await server.shutdown(1_000);
    await db.close();
  }
}

/** µs per read of a 100-event page: the reader's statement against a naive keyset read without the horizon. */
async function readCost(dataSource: DataSource, tenantId: string): Promise<void> {
  await dataSource.query(
    `INSERT INTO events (tenant_id, type, customer_id, payload_kind, payload)
     SELECT $1, 'CUSTOMER_CREDIT_CREATED', 'c' || g, 'customer_credit', '{}' FROM generate_series(1, $2) g`,
    [tenantId, READ_EVENTS],
  );
  await dataSource.query('ANALYZE events');
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    const repository = new EventRepository(runner.manager);
    const positions: Array<{ xid: string; position: string }> = await runner.query(
      `SELECT xid::text, position::text FROM events WHERE tenant_id = $1 ORDER BY xid, position`,
      [tenantId],
    );
    const at = (i: number) => positions[(i * 7919) % (positions.length - 200)]!;
    const time = async (read: (i: number) => Promise<unknown>) => {
      for (let i = 0; i < 200; i++) await read(i); // plans cached, pages warm
      const started = process.hrtime.bigint();
      for (let i = 0; i < READS; i++) await read(i);
      return Number(process.hrtime.bigint() - started) / 1e3 / READS;
    };
    const horizon = await time((i) => repository.readAfter(tenantId, { xid: BigInt(at(i).xid), position: BigInt(at(i).position) }, {}, 100, true));
    const naive = await time((i) =>
      runner.query(
        `SELECT e.xid::text, e.position::text, e.id, e.type, e.customer_id, e.create_time, e.payload_kind, e.payload
           FROM events e WHERE e.tenant_id = $1 AND (e.xid, e.position) > ($2::xid8, $3::bigint) ORDER BY e.xid, e.position LIMIT 100`,
        [tenantId, at(i).xid, at(i).position],
      ),
    );
    console.log(
      `read of a 100-event page (${READS} reads, one connection): the reader's statement ${horizon.toFixed(0)} µs, ` +
        `a naive keyset read without horizon, watermark or entry join ${naive.toFixed(0)} µs (${(horizon / naive).toFixed(2)}×)`,
    );
  } finally {
    await runner.release();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('event-horizon: failed:', err);
    process.exit(1);
  },
);
