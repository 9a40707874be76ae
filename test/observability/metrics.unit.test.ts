import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Metrics } from '../../src/observability/metrics';

/** One series' value in the registry's text exposition (0 when absent). */
async function valueOf(metrics: Metrics, series: string): Promise<number> {
  const line = (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('Metrics: per-call counters kept as tallies', () => {
  const labels = 'grpc_type="unary",grpc_service="credits.v1.PromotionalCreditService",grpc_method="AddPromotionalCredits"';

  it('shows what was counted when read, once: reads in a row agree, counts after a read add to it', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const m = metrics.method('/credits.v1.PromotionalCreditService/AddPromotionalCredits');
    expect(await valueOf(metrics, `grpc_server_started_total{${labels}}`), 'nothing counted yet').to.equal(0);
    for (let i = 0; i < 3; i++) m.started.inc();
    m.handled(status.OK).inc();
    m.handled(status.OK).inc();
    m.handled(status.NOT_FOUND).inc();
    metrics.authLookup(true);
    expect(await valueOf(metrics, `grpc_server_started_total{${labels}}`)).to.equal(3);
    expect(await valueOf(metrics, `grpc_server_started_total{${labels}}`), 'a second read').to.equal(3);
    expect(await valueOf(metrics, `grpc_server_handled_total{${labels},grpc_code="OK"}`)).to.equal(2);
    expect(await valueOf(metrics, `grpc_server_handled_total{${labels},grpc_code="NotFound"}`)).to.equal(1);
    expect(await valueOf(metrics, 'credits_auth_cache_lookups_total{result="hit"}')).to.equal(1);
    m.started.inc(2);
    expect(await valueOf(metrics, `grpc_server_started_total{${labels}}`)).to.equal(5);
    expect(await valueOf(metrics, 'credits_auth_cache_lookups_total{result="miss"}'), 'shown at 0 from the start').to.equal(0);
    expect((await metrics.registry.metrics()).includes('credits_auth_cache_lookups_total{result="miss"} 0')).to.equal(true);
  });
});

describe('Metrics: the connection pool', () => {
  it('counts connections lent out as in use, and those still being opened apart (a database that hangs on connect)', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const counters = { totalCount: 5, idleCount: 1, waitingCount: 3 };
    let lent = 1;
    metrics.observeDatabasePool(() => counters, 20, () => lent);
    expect(await valueOf(metrics, 'credits_db_pool_connections_in_use')).to.equal(1);
    expect(await valueOf(metrics, 'credits_db_pool_connections_opening')).to.equal(3);
    expect(await valueOf(metrics, 'credits_db_pool_connections_idle')).to.equal(1);
    expect(await valueOf(metrics, 'credits_db_pool_waiting')).to.equal(3);
    lent = 4;
    expect(await valueOf(metrics, 'credits_db_pool_connections_in_use')).to.equal(4);
    expect(await valueOf(metrics, 'credits_db_pool_connections_opening')).to.equal(0);
  });
});

describe('Metrics: active holds read on a scrape', () => {
  it('a scrape while the last read still runs (a database that hangs) starts no other read', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const rows = [{ currency: 'USD', holds: 2, held: 70n }];
    let reads = 0;
    let answer: (value: typeof rows) => void = () => {};
    // The first read hangs until answered; later ones answer at once.
    metrics.observeHolds(() => (++reads === 1 ? new Promise((resolve) => (answer = resolve)) : Promise.resolve(rows)), 20);
    for (let i = 0; i < 3; i++) expect(await valueOf(metrics, 'credits_holds_active{currency="USD"}'), `scrape ${i} without an answer`).to.equal(0);
    expect(reads, 'one read, however many scrapes').to.equal(1);
    answer(rows);
    await new Promise((resolve) => setImmediate(resolve));
    expect(await valueOf(metrics, 'credits_holds_active{currency="USD"}'), 'the next scrape reads again').to.equal(2);
    expect(reads).to.equal(2);
  });
});

describe("Metrics: the database's clock", () => {
  it('shows the offset and how long ago it was measured, read on each scrape', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const clock = { offset: 0, sinceMeasured: 0 };
    metrics.observeDatabaseClock(clock);
    expect(await valueOf(metrics, 'credits_db_clock_measure_age_seconds')).to.equal(0);
    clock.offset = -1_250;
    clock.sinceMeasured = 61_500;
    expect(await valueOf(metrics, 'credits_db_clock_offset_seconds')).to.equal(-1.25);
    expect(await valueOf(metrics, 'credits_db_clock_measure_age_seconds')).to.equal(61.5);
  });
});
