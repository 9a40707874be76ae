import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { TracerProvider } from '@opentelemetry/sdk-trace';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { createCreditsClient } from '../../client/src';
import { freePort, spawnServer, type ChildServer } from '../support/child-server';
import { openTestDataSource, testDatabaseUrl } from '../support/database';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { promotionalCredits } from '../support/server';
import { newTenant, type TestTenant } from '../support/tenant';

const SPAN_KIND_SERVER = 2;
const SPAN_KIND_CLIENT = 3;

/**
 * Tracing end to end: `credits serve` in a process of its own (tracing is
 * process-wide) exports over OTLP/HTTP protobuf to a real receiver on a
 * local port, and @credits/client in this process calls it inside a span of
 * the caller's.
 */
describe('observability: OpenTelemetry tracing', function () {
  this.timeout(120_000);
  let receiver: OtlpReceiver;
  let server: ChildServer;
  let dataSource: DataSource;
  let tenant: TestTenant;

  before(async () => {
    receiver = await startOtlpReceiver();
    dataSource = await openTestDataSource(2);
    tenant = await newTenant(dataSource);
    server = await spawnServer(await testDatabaseUrl(), await freePort(), {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_SERVICE_NAME: 'credits-under-test',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      LOG_LEVEL: 'info',
    });
  });
  after(async () => {
    if (server && server.process.exitCode === null && server.process.signalCode === null) {
      server.process.kill('SIGTERM');
      await server.exited;
    }
    await receiver?.close();
    await dataSource?.destroy();
  });

  /** What `probe` answers once `ready` accepts it, or its last answer after `ms` (every 50 ms). */
  async function awaited<T>(probe: () => T, ready: (value: T) => boolean, ms: number): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = probe();
      if (ready(value) || Date.now() > deadline) return value;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The spans of one trace, once `ready` says they are all there (the server exports every 50 ms). */
  function spansOf(traceId: string, ready: (spans: ReceivedSpan[]) => boolean): Promise<ReceivedSpan[]> {
    return awaited(() => receiver.spans.filter((s) => s.traceId === traceId), ready, 20_000);
  }

  it("continues the caller's trace: one server span under the caller's, database statements under it, ids on the log line", async () => {
    // The caller's tracing: an SDK provider and context manager in this process, as an application has.
    const contextManager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(contextManager);
    trace.setGlobalTracerProvider(new TracerProvider());
    let caller;
    try {
      caller = trace.getTracer('checkout-service').startSpan('checkout');
      const client = createCreditsClient({ address: server.address, apiKey: tenant.rwKey });
      try {
        await context.with(trace.setSpan(context.active(), caller), () =>
          client.promotionalCredits.addPromotionalCredits({ customerId: 'traced', amount: 250n, description: 'traced add' }),
        );
      } finally {
        client.close();
        caller.end();
      }
    } finally {
      trace.disable();
      context.disable();
    }
    const { traceId, spanId: callerSpanId } = caller.spanContext();

    const spans = await spansOf(traceId, (found) => found.some((s) => s.kind === SPAN_KIND_SERVER) && found.some((s) => s.name.startsWith('COMMIT')));
    const servers = spans.filter((s) => s.kind === SPAN_KIND_SERVER);
    expect(servers.map((s) => s.name), 'server spans of the trace').to.deep.equal(['credits.v1.PromotionalCreditService/AddPromotionalCredits']);
    const serverSpan = servers[0]!;
    expect(serverSpan.parentSpanId, "the server span's parent is the caller's span").to.equal(callerSpanId);
    expect(serverSpan.attributes).to.include({
      'rpc.system': 'grpc',
      'rpc.service': 'credits.v1.PromotionalCreditService',
      'rpc.method': 'AddPromotionalCredits',
      'rpc.grpc.status_code': 0,
    });
    expect(serverSpan.statusCode, 'OK is not an error').to.equal(0);
    expect(serverSpan.resource['service.name']).to.equal('credits-under-test');

    // Every statement of the call descends from the server span (through the group commit's span).
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const descendsFromServer = (s: ReceivedSpan): boolean => {
      for (let at: ReceivedSpan | undefined = s; at; at = byId.get(at.parentSpanId)) if (at.parentSpanId === serverSpan.spanId) return true;
      return false;
    };
    const statements = spans.filter((s) => s.kind === SPAN_KIND_CLIENT);
    expect(statements.length, 'statement spans').to.be.greaterThan(1);
    for (const statement of statements) {
      expect(statement.attributes['db.system'], statement.name).to.equal('postgresql');
      expect(statement.attributes['db.query.text'], statement.name).to.be.a('string');
      expect(descendsFromServer(statement), `${statement.name} descends from the server span`).to.equal(true);
    }
    expect(statements.some((s) => String(s.attributes['db.query.text']).includes('promotional_credit_apply')), 'the ledger write is one of them').to.equal(true);
    const group = spans.find((s) => s.name === 'group commit keyed_calls');
    expect(group, 'the group commit span').to.not.equal(undefined);
    expect(group!.parentSpanId).to.equal(serverSpan.spanId);
    expect(group!.links.map((l) => l.spanId)).to.include(serverSpan.spanId);
    // Every group commit is named (the keyed call's own statements: its shared transaction's items).
    const groups = spans.filter((s) => s.name.startsWith('group commit '));
    expect(groups.map((s) => s.name)).to.include('group commit shared_transaction_items');
    expect(groups.map((s) => s.name)).to.not.include('group commit unnamed');

    // The call's log line carries the trace and the server span (lines are written within 100 ms of being logged).
    const callLine = () =>
      server
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'call' && l.method === '/credits.v1.PromotionalCreditService/AddPromotionalCredits' && l.trace_id === traceId);
    const line = await awaited(callLine, (found) => found !== undefined, 5_000);
    expect(line, 'a call log line with the trace id').to.not.equal(undefined);
    expect(line!.span_id).to.equal(serverSpan.spanId);
  });

  it('starts a trace of its own for a call without traceparent, and keeps the status code of a refused call', async () => {
    const client = promotionalCredits(server.address, tenant.rwKey);
    const before = new Set(receiver.spans.map((s) => s.spanId));
    try {
      await client.getCustomerBalance({ customerId: 'not a valid id!' }).catch(() => undefined);
    } finally {
      client.close();
    }
    let mine: ReceivedSpan | undefined;
    const deadline = Date.now() + 20_000;
    while (!mine && Date.now() < deadline) {
      mine = receiver.spans.find((s) => !before.has(s.spanId) && s.kind === SPAN_KIND_SERVER && s.attributes['rpc.method'] === 'GetCustomerBalance');
      if (!mine) await new Promise((r) => setTimeout(r, 50));
    }
    expect(mine, 'the server span').to.not.equal(undefined);
    expect(mine!.parentSpanId, 'a root span').to.equal('');
    expect(mine!.attributes['rpc.grpc.status_code'], 'INVALID_ARGUMENT').to.equal(3);
    // A caller's error is not the server's: the span status stays unset.
    expect(mine!.statusCode).to.equal(0);
  });
});
