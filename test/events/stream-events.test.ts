import { Writable } from 'node:stream';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import pino from 'pino';
import type { DataSource } from 'typeorm';
import { EventType } from '../../gen/credits/v1/event_service';
import { startGrpcServer, type GrpcServer } from '../../src/grpc/server';
import { START_CURSOR_HEADER } from '../../src/grpc/event.handler';
import { openTestDataSource } from '../support/database';
import { eventsClient, listAll, storedEventIds } from '../support/events';
import { promotionalCredits, replicaServer } from '../support/server';
import { decodeError, expectError } from '../support/status';
import { newTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

const base = { currencyCode: 'USD', description: 'stream test' };
/** The contract's delivery bound. */
const DELIVERY_MS = 1_000;

describe('EventService.StreamEvents', function () {
  this.timeout(60_000);
  const t = useTenantClients({ replica: true });

  it('delivers every event committed on one process to a stream on another within 1 s, with nothing else of the tenant', async () => {
    const onReplica = eventsClient((await replicaServer()).address, t.tenant.readKey);
    const stream = onReplica.stream();
    try {
      await stream.headers;
      for (let i = 1; i <= 5; i++) {
        await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: `c${i}`, amount: 10n });
        await stream.until((got) => got.length >= i, DELIVERY_MS, `event ${i} within 1 s of its commit`);
      }
      expect(stream.events.map((e) => e.id)).to.deep.equal(await storedEventIds(t.server.dataSource, t.tenant.id));
    } finally {
      stream.cancel();
      onReplica.close();
    }
  });

  it('sends the history first and then follows; live_only skips the history, and its start-cursor header resumes without a gap', async () => {
    const events = eventsClient(t.server.address, t.tenant.readKey);
    try {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'old', amount: 10n });
      const everything = events.stream();
      const live = events.stream({ liveOnly: true });
      const liveHeaders = await live.headers;
      expect((await everything.headers).get(START_CURSOR_HEADER), 'from the beginning: no start cursor').to.deep.equal([]);
      const [startCursor] = liveHeaders.get(START_CURSOR_HEADER) as string[];
      expect(startCursor).to.match(/^[A-Za-z0-9_-]{34}$/);
      live.cancel(); // a live reader gone before its first event...
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'new', amount: 10n });
      await everything.until((got) => got.length >= 2, DELIVERY_MS);
      expect(everything.events.map((e) => e.customerId)).to.deep.equal(['old', 'new']);
      // ...resumes from its start cursor and misses nothing committed meanwhile.
      const resumed = events.stream({ afterCursor: startCursor });
      await resumed.until((got) => got.length >= 1, DELIVERY_MS);
      expect(resumed.events.map((e) => e.customerId)).to.deep.equal(['new']);
      expect((await resumed.headers).get(START_CURSOR_HEADER)).to.deep.equal([startCursor]);
      const fresh = events.stream({ liveOnly: true });
      await fresh.headers;
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'newer', amount: 10n });
      await fresh.until((got) => got.some((e) => e.customerId === 'newer'), DELIVERY_MS);
      expect(fresh.events.map((e) => e.customerId), 'live_only: no history').to.deep.equal(['newer']);
      for (const s of [everything, resumed, fresh]) s.cancel();
      await expectError(events.stream({ liveOnly: true, afterCursor: startCursor }).finished(5_000).then((e) => Promise.reject(e)), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    } finally {
      events.close();
    }
  });

  it('filters by types and customer, and never sends another tenant’s events', async () => {
    const other = await newTenant(t.server.dataSource);
    const otherCredits = promotionalCredits(t.server.address, other.rwKey);
    const events = eventsClient(t.server.address, t.tenant.readKey);
    try {
      const all = events.stream();
      const depleted = events.stream({ types: [EventType.EVENT_TYPE_BALANCE_DEPLETED] });
      const customer = events.stream({ customerId: 'same' });
      await Promise.all([all.headers, depleted.headers, customer.headers]);
      await otherCredits.addPromotionalCredits({ ...base, customerId: 'same', amount: 10n });
      await otherCredits.deductPromotionalCredits({ ...base, customerId: 'same' });
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'same', amount: 10n });
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'else', amount: 10n });
      await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'else' });
      const stored = await storedEventIds(t.server.dataSource, t.tenant.id);
      await all.until((got) => got.length >= stored.length, DELIVERY_MS);
      await depleted.until((got) => got.length >= 1, DELIVERY_MS);
      await customer.until((got) => got.length >= 1, DELIVERY_MS);
      await new Promise((r) => setTimeout(r, 200)); // anything extra would come by now
      expect(all.events.map((e) => e.id)).to.deep.equal(stored);
      expect(depleted.events.map((e) => [EventType[e.type], e.customerId])).to.deep.equal([['EVENT_TYPE_BALANCE_DEPLETED', 'else']]);
      expect(customer.events.map((e) => [EventType[e.type], e.customerId])).to.deep.equal([['EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED', 'same']]);
      for (const s of [all, depleted, customer]) s.cancel();
    } finally {
      events.close();
      otherCredits.close();
    }
  });

  describe('on a server of its own', () => {
    let dataSource: DataSource;
    let grpc: GrpcServer | undefined;
    const lines: Array<Record<string, unknown>> = [];

    beforeEach(async () => {
      // A pool of 4 connections for many streams: a stream that kept one would starve the rest.
      dataSource = await openTestDataSource(4);
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
          done();
        },
      });
      grpc = await startGrpcServer({ dataSource, logger: pino({ level: 'info' }, sink) }, { address: '127.0.0.1:0', authCacheMs: 0 });
    });
    afterEach(async () => {
      await grpc?.shutdown(5_000);
      await dataSource.destroy();
      lines.length = 0;
    });

    it('keeps 30 idle streams on a pool of 4 connections: each is woken at a commit, and calls are still served', async () => {
      const address = `127.0.0.1:${grpc!.port}`;
      const events = eventsClient(address, t.tenant.readKey);
      const credits = promotionalCredits(address, t.tenant.rwKey);
      try {
        const streams = Array.from({ length: 30 }, () => events.stream());
        await Promise.all(streams.map((s) => s.headers));
        await Promise.all(Array.from({ length: 10 }, (_, i) => credits.getCustomerBalance({ customerId: `c${i}` })));
        await credits.addPromotionalCredits({ ...base, customerId: 'wake', amount: 10n });
        await Promise.all(streams.map((s, i) => s.until((got) => got.length >= 1, DELIVERY_MS, `stream ${i}`)));
        const [listeners] = (await dataSource.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [
          `credits-events-listener (pid ${process.pid})`,
        ])) as Array<{ n: number }>;
        expect(listeners!.n, 'listening connections of this process: the shared server and this one').to.equal(2);
        for (const s of streams) s.cancel();
      } finally {
        events.close();
        credits.close();
      }
    });

    it('ends open streams with UNAVAILABLE (SHUTTING_DOWN) on shutdown, logs each stream once, and a cancelled one as CANCELLED', async () => {
      const address = `127.0.0.1:${grpc!.port}`;
      const events = eventsClient(address, t.tenant.readKey);
      try {
        const cancelled = events.stream();
        const open = [events.stream(), events.stream({ liveOnly: true })];
        await Promise.all([cancelled, ...open].map((s) => s.headers));
        cancelled.cancel();
        for (let i = 0; i < 100 && !lines.some((l) => l.code === 'CANCELLED'); i++) await new Promise((r) => setTimeout(r, 50));
        await grpc!.shutdown(30_000);
        grpc = undefined;
        for (const s of open) {
          const error = decodeError((await s.finished(5_000))!);
          expect([status[error.code], error.reason]).to.deep.equal(['UNAVAILABLE', 'SHUTTING_DOWN']);
        }
        const streamLines = lines.filter((l) => l.method === '/credits.v1.EventService/StreamEvents');
        expect(streamLines.map((l) => [l.code, l.reason]).sort()).to.deep.equal([
          ['CANCELLED', 'CANCELLED'],
          ['UNAVAILABLE', 'SHUTTING_DOWN'],
          ['UNAVAILABLE', 'SHUTTING_DOWN'],
        ]);
        expect(lines.filter((l) => (l.level as number) >= 50), 'no error logged').to.deep.equal([]);
      } finally {
        events.close();
      }
    });
  });

  it('answers ListEvents the same events a stream sent, once each', async () => {
    const events = eventsClient(t.server.address, t.tenant.readKey);
    try {
      const stream = events.stream();
      await stream.headers;
      await Promise.all(Array.from({ length: 20 }, (_, i) => t.promotionalCredits.addPromotionalCredits({ ...base, customerId: `p${i % 4}`, amount: 1n })));
      const { events: listed } = await listAll(events);
      await stream.until((got) => got.length >= listed.length, DELIVERY_MS);
      expect(stream.events).to.deep.equal(listed);
      stream.cancel();
    } finally {
      events.close();
    }
  });
});
