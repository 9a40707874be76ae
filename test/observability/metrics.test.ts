import http from 'node:http';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { startGrpcServer, type GrpcServer } from '../../src/grpc/server';
import { createLogger } from '../../src/logger';
import { Metrics } from '../../src/observability/metrics';
import { eventsClient } from '../support/events';
import { eventually } from '../support/eventually';
import { checkHealth, HealthClient } from '../support/health-status';
import { startMetricsServer, type MetricsServer } from '../../src/observability/metrics-server';
import { openTestDataSource } from '../support/database';
import { scrape, type Scrape } from '../support/prometheus';
import { askReflection, reflectionClient } from '../support/reflection';
import { promotionalCredits, type PromotionalCreditClient } from '../support/server';
import { newTenant, type TestTenant } from '../support/tenant';

/**
 * Prometheus metrics of a real server, scraped over HTTP before and after
 * real calls: each counter must move by exactly the calls made, per method
 * and code (the server has a registry of its own, so nothing else counts).
 */
describe('observability: Prometheus metrics', function () {
  this.timeout(60_000);
  const PROMO = 'credits.v1.PromotionalCreditService';
  let dataSource: DataSource;
  let grpc: GrpcServer;
  let metricsServer: MetricsServer;
  let metricsAddress: string;
  let tenant: TestTenant;
  let rw: PromotionalCreditClient;
  let startedAt: number;

  before(async () => {
    startedAt = Date.now();
    dataSource = await openTestDataSource(10);
    const metrics = new Metrics();
    // A key cache, so that hits and misses both happen; an expiry sweep every second.
    grpc = await startGrpcServer(
      { dataSource, logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'), metrics },
      { address: '127.0.0.1:0', authCacheMs: 60_000, expirySweepSeconds: 1 },
    );
    metricsServer = await startMetricsServer(metrics.registry, '127.0.0.1:0');
    metricsAddress = `127.0.0.1:${metricsServer.port}`;
    tenant = await newTenant(dataSource);
    rw = promotionalCredits(`127.0.0.1:${grpc.port}`, tenant.rwKey);
  });
  after(async () => {
    rw?.close();
    await metricsServer?.close();
    await grpc?.shutdown(1000);
    await dataSource?.destroy();
  });

  const codeOf = async (call: Promise<unknown>): Promise<string> => {
    try {
      await call;
      return 'OK';
    } catch (err) {
      return status[(err as ServiceError).code]!;
    }
  };

  it('counts every call by method and code, its handling time, replays, key cache lookups and group sizes', async () => {
    const address = `127.0.0.1:${grpc.port}`;
    const before = await scrape(metricsAddress);
    const add = { customerId: 'metrics-1', amount: 100n, currencyCode: 'USD', description: 'metrics test' };
    const keyed = new Metadata();
    keyed.set('idempotency-key', 'metrics-keyed-1');
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) codes.push(await codeOf(rw.addPromotionalCredits(add)));
    codes.push(await codeOf(rw.deductPromotionalCredits({ ...add, amount: 1_000_000n })));
    codes.push(await codeOf(rw.addPromotionalCredits(add, keyed)));
    codes.push(await codeOf(rw.addPromotionalCredits(add, keyed)));
    for (let i = 0; i < 2; i++) codes.push(await codeOf(rw.getCustomerBalance({ customerId: 'metrics-1' })));
    codes.push(await codeOf(rw.holdPromotionalCredits({ ...add, amount: 50n, expireTime: new Date(Date.now() + 3_600_000) })));
    const anonymous = promotionalCredits(address, undefined);
    const reader = promotionalCredits(address, tenant.readKey);
    codes.push(await codeOf(anonymous.getCustomerBalance({ customerId: 'metrics-1' })));
    codes.push(await codeOf(reader.addPromotionalCredits(add)));
    anonymous.close();
    reader.close();
    expect(codes).to.deep.equal(['OK', 'OK', 'OK', 'FAILED_PRECONDITION', 'OK', 'OK', 'OK', 'OK', 'OK', 'UNAUTHENTICATED', 'PERMISSION_DENIED']);
    const after = await scrape(metricsAddress);
    const delta = (name: string, labels: Record<string, string> = {}) => after.value(name, labels) - before.value(name, labels);

    // go-grpc-prometheus's series: grpc_code as grpc-go spells it.
    const handled: Array<[method: string, code: string, calls: number]> = [
      ['AddPromotionalCredits', 'OK', 5],
      ['AddPromotionalCredits', 'PermissionDenied', 1],
      ['DeductPromotionalCredits', 'FailedPrecondition', 1],
      ['GetCustomerBalance', 'OK', 2],
      ['GetCustomerBalance', 'Unauthenticated', 1],
      ['HoldPromotionalCredits', 'OK', 1],
    ];
    const moved = after
      .series('grpc_server_handled_total')
      .map((s) => [s.labels.grpc_method!, s.labels.grpc_code!, s.value - before.value('grpc_server_handled_total', s.labels)] as [string, string, number])
      .filter(([, , n]) => n !== 0)
      .sort();
    expect(moved).to.deep.equal(handled);
    for (const [method, calls] of [['AddPromotionalCredits', 6], ['DeductPromotionalCredits', 1], ['GetCustomerBalance', 3], ['HoldPromotionalCredits', 1]] as const) {
      const labels = { grpc_type: 'unary', grpc_service: PROMO, grpc_method: method };
      expect(delta('grpc_server_started_total', labels), `started ${method}`).to.equal(calls);
      expect(delta('grpc_server_msg_received_total', labels), `received ${method}`).to.equal(calls);
      expect(delta('grpc_server_handling_seconds_count', labels), `timed ${method}`).to.equal(calls);
      expect(delta('grpc_server_handling_seconds_bucket', { ...labels, le: '+Inf' }), `+Inf bucket ${method}`).to.equal(calls);
    }
    expect(delta('grpc_server_msg_sent_total', { grpc_type: 'unary', grpc_service: PROMO, grpc_method: 'AddPromotionalCredits' })).to.equal(5);

    expect(delta('credits_idempotent_replays_total', { grpc_service: PROMO, grpc_method: 'AddPromotionalCredits' }), 'replays').to.equal(1);
    // The rw key is looked up once, then cached; the read key once. The anonymous call has no key to look up.
    expect(delta('credits_auth_cache_lookups_total', { result: 'miss' }), 'cache misses').to.equal(2);
    expect(delta('credits_auth_cache_lookups_total', { result: 'hit' }), 'cache hits').to.equal(8);
    // One call at a time: every group has one member. Keyless: 3 adds, the deduct, the hold; keyed: the add and its replay.
    expect(delta('credits_group_commit_size_sum', { group: 'keyless_statements' }), 'keyless members').to.equal(5);
    expect(delta('credits_group_commit_size_count', { group: 'keyless_statements' }), 'keyless groups').to.equal(5);
    expect(delta('credits_group_commit_size_sum', { group: 'keyed_calls' }), 'keyed members').to.equal(2);
    // The reads share statements too: the two balance reads that got past authentication.
    expect(delta('credits_group_commit_size_sum', { group: 'balance_reads' }), 'balance reads').to.equal(2);
    expect(delta('credits_group_commit_size_count', { group: 'balance_reads' }), 'balance read groups').to.equal(2);
  });

  it('counts health checks and reflection calls, which bypass the call pipeline, in the same series by their kind', async () => {
    const address = `127.0.0.1:${grpc.port}`;
    const before = await scrape(metricsAddress);
    expect(await checkHealth(address, '')).to.equal('SERVING');
    expect(await checkHealth(address, PROMO)).to.equal('SERVING');
    expect(await codeOf(checkHealth(address, 'no.such.Service'))).to.equal('NOT_FOUND');
    const reflection = reflectionClient(address);
    try {
      expect((await askReflection(reflection, { list_services: '' })).list_services_response!.service.map((s) => s.name)).to.include(PROMO);
    } finally {
      reflection.close();
    }
    // A Watch: its first status, then the client cancels it.
    const health = new HealthClient(address, credentials.createInsecure());
    try {
      const watch = health.watch({ service: '' });
      await new Promise<void>((resolve, reject) => {
        watch.once('data', () => resolve());
        watch.once('error', reject);
      });
      watch.on('error', () => undefined); // the cancellation
      watch.cancel();
    } finally {
      health.close();
    }

    const HEALTH = 'grpc.health.v1.Health';
    const REFLECTION = 'grpc.reflection.v1.ServerReflection';
    const expected: Array<[type: string, service: string, method: string, started: number, received: number, sent: number, handled: Record<string, number>]> = [
      ['unary', HEALTH, 'Check', 3, 3, 2, { OK: 2, NotFound: 1 }],
      ['bidi_stream', REFLECTION, 'ServerReflectionInfo', 1, 1, 1, { OK: 1 }],
      ['server_stream', HEALTH, 'Watch', 1, 1, 1, { Canceled: 1 }],
    ];
    // The server counts a stream's end once it has ended on its side, after the client's.
    const ended = (s: Scrape) => s.value('grpc_server_handled_total', { grpc_type: 'server_stream', grpc_service: HEALTH, grpc_method: 'Watch', grpc_code: 'Canceled' }) > before.value('grpc_server_handled_total', { grpc_type: 'server_stream', grpc_service: HEALTH, grpc_method: 'Watch', grpc_code: 'Canceled' });
    const after = await eventually(5000, () => scrape(metricsAddress), ended);
    for (const [grpc_type, grpc_service, grpc_method, started, received, sent, handled] of expected) {
      const labels = { grpc_type, grpc_service, grpc_method };
      const delta = (name: string, more: Record<string, string> = {}) => after.value(name, Object.assign({}, labels, more)) - before.value(name, Object.assign({}, labels, more));
      expect(delta('grpc_server_started_total'), `started ${grpc_method}`).to.equal(started);
      expect(delta('grpc_server_msg_received_total'), `received ${grpc_method}`).to.equal(received);
      expect(delta('grpc_server_msg_sent_total'), `sent ${grpc_method}`).to.equal(sent);
      expect(delta('grpc_server_handling_seconds_count'), `timed ${grpc_method}`).to.equal(started);
      const codes = after
        .series('grpc_server_handled_total', labels)
        .map((s) => [s.labels.grpc_code!, s.value - before.value('grpc_server_handled_total', s.labels)] as const)
        .filter(([, n]) => n !== 0);
      expect(Object.fromEntries(codes), `handled ${grpc_method}`).to.deep.equal(handled);
    }
  });

  it('reports the pool, active holds, the database, the expiry sweep and Node process figures', async () => {
    await rw.addPromotionalCredits({ customerId: 'metrics-2', amount: 500n, currencyCode: 'USD', description: 'metrics test' });
    await rw.holdPromotionalCredits({ customerId: 'metrics-2', amount: 70n, currencyCode: 'USD', description: 'metrics test', expireTime: new Date(Date.now() + 3_600_000) });
    let found: Scrape;
    const deadline = Date.now() + 10_000;
    do {
      found = await scrape(metricsAddress);
      if (found.value('credits_expiry_sweeps_total', { outcome: 'ok' }) > 0) break;
      await new Promise((r) => setTimeout(r, 200));
    } while (Date.now() < deadline);
    expect(found.value('credits_expiry_sweeps_total', { outcome: 'ok' }), 'sweeps run').to.be.greaterThan(0);
    expect(found.has('credits_expiry_settled_balances_total')).to.equal(true);
    expect(found.has('credits_expiry_lapsed_redemptions_total')).to.equal(true);
    expect(found.value('credits_db_pool_max_connections')).to.equal(10);
    expect(found.value('credits_db_pool_connections_idle') + found.value('credits_db_pool_connections_in_use')).to.be.within(1, 10);
    expect(found.has('credits_db_pool_waiting')).to.equal(true);
    expect(found.value('credits_database_up')).to.equal(1);
    // The database on this host: its clock and the server's agree (DatabaseClock).
    expect(found.value('credits_db_clock_offset_seconds')).to.equal(0);
    // …as measured at start, no longer ago than this test has run.
    expect(found.value('credits_db_clock_measure_age_seconds')).to.be.within(0, (Date.now() - startedAt) / 1000);
    // Holds of every tenant in the test database: at least this one's.
    expect(found.value('credits_holds_active', { currency: 'USD' })).to.be.at.least(1);
    expect(found.value('credits_holds_active_amount', { currency: 'USD' })).to.be.at.least(70);
    expect(found.has('process_cpu_user_seconds_total')).to.equal(true);
    expect(found.has('nodejs_heap_size_used_bytes')).to.equal(true);
  });

  it('observes the lag of every event a stream sends', async () => {
    const address = `127.0.0.1:${grpc.port}`;
    const events = eventsClient(address, tenant.readKey);
    const stream = events.stream({ liveOnly: true });
    try {
      const before = await scrape(metricsAddress);
      await stream.headers; // live_only answers its start position first: events after it are the stream's
      for (let i = 0; i < 3; i++) await rw.addPromotionalCredits({ customerId: 'metrics-3', amount: 1n, currencyCode: 'USD', description: 'metrics lag' });
      await stream.until((got) => got.length === 3, 5000, 'the three events');
      const after = await scrape(metricsAddress);
      const sent = (s: Scrape) => (s.has('credits_event_stream_lag_seconds_count') ? s.value('credits_event_stream_lag_seconds_count') : 0);
      expect(sent(after) - sent(before)).to.equal(3);
      expect(after.value('credits_event_stream_lag_seconds_bucket', { le: '+Inf' })).to.be.at.least(3);
      // As go-grpc-prometheus counts a server stream: its own grpc_type, each message sent (found in review: unary, none).
      const stream_ = { grpc_type: 'server_stream', grpc_service: 'credits.v1.EventService', grpc_method: 'StreamEvents' };
      const messages = (s: Scrape) => (s.has('grpc_server_msg_sent_total', stream_) ? s.value('grpc_server_msg_sent_total', stream_) : 0);
      expect(messages(after) - messages(before), 'messages sent').to.equal(3);
      expect(after.value('grpc_server_started_total', stream_), 'started as a server stream').to.be.at.least(1);
      expect(after.has('grpc_server_started_total', { ...stream_, grpc_type: 'unary' }), 'not as unary').to.equal(false);
    } finally {
      stream.cancel();
      events.close();
    }
  });

  it('observes no lag for the events a stream replays from its cursor, only for those written while it is open', async () => {
    const address = `127.0.0.1:${grpc.port}`;
    for (let i = 0; i < 3; i++) await rw.addPromotionalCredits({ customerId: 'metrics-4', amount: 1n, currencyCode: 'USD', description: 'metrics replay' });
    const before = await scrape(metricsAddress);
    const events = eventsClient(address, tenant.readKey);
    const stream = events.stream({ customerId: 'metrics-4' }); // from the oldest kept: the three above are a replay
    try {
      await stream.until((got) => got.length === 3, 5000, 'the three replayed events');
      await rw.addPromotionalCredits({ customerId: 'metrics-4', amount: 1n, currencyCode: 'USD', description: 'metrics live' });
      await stream.until((got) => got.length === 4, 5000, 'the live event');
      const after = await scrape(metricsAddress);
      const sent = (s: Scrape) => (s.has('credits_event_stream_lag_seconds_count') ? s.value('credits_event_stream_lag_seconds_count') : 0);
      expect(sent(after) - sent(before), 'the live event only').to.equal(1);
    } finally {
      stream.cancel();
      events.close();
    }
  });

  it('answers 404 for anything but GET /metrics', async () => {
    const code = await new Promise<number | undefined>((resolve, reject) =>
      http.get(`http://${metricsAddress}/`, (res) => {
        res.resume();
        resolve(res.statusCode);
      }).on('error', reject),
    );
    expect(code).to.equal(404);
  });
});
