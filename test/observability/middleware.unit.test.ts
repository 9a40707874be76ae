import { Metadata, status } from '@grpc/grpc-js';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { expect } from 'chai';
import { ErrorReason } from '../../src/common/domain-error';
import { recordCallMetrics, traceCalls } from '../../src/grpc/middleware';
import type { Call, Next, Outcome } from '../../src/grpc/pipeline';
import { Metrics } from '../../src/observability/metrics';
import { traceFields } from '../../src/observability/trace-context';
import { Scrape } from '../support/prometheus';

const PATH = '/credits.v1.PromotionalCreditService/AddPromotionalCredits';

function callOf(headers: Record<string, string> = {}): Call {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  return {
    path: PATH,
    method: { path: PATH, responseSerialize: () => Buffer.alloc(0), responseDeserialize: () => ({}) },
    scope: 'write',
    request: {},
    metadata,
    requestId: 'req-1',
    gone: () => false,
    sharesTransaction: false,
  };
}

const ok: Next = async () => ({ replayed: false, response: {} });
const replayed: Next = async () => ({ replayed: true, response: {} });
const failing =
  (code: status): Next =>
  async () => ({ replayed: false, error: { code, reason: ErrorReason.Internal, message: 'x', violations: [], metadata: {}, expected: code !== status.INTERNAL } }) as Outcome;

describe('observability middleware (unit)', () => {
  it('recordCallMetrics counts started, handled by code (grpc-go spelling), handling time, messages and replays', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const record = recordCallMetrics(metrics);
    await record(callOf(), ok);
    await record(callOf(), replayed);
    await record(callOf(), failing(status.FAILED_PRECONDITION));
    const scrape = new Scrape(await metrics.registry.metrics());
    const labels = { grpc_type: 'unary', grpc_service: 'credits.v1.PromotionalCreditService', grpc_method: 'AddPromotionalCredits' };
    expect(scrape.value('grpc_server_started_total', labels)).to.equal(3);
    expect(scrape.value('grpc_server_msg_received_total', labels)).to.equal(3);
    expect(scrape.value('grpc_server_msg_sent_total', labels)).to.equal(2);
    expect(scrape.value('grpc_server_handled_total', { ...labels, grpc_code: 'OK' })).to.equal(2);
    expect(scrape.value('grpc_server_handled_total', { ...labels, grpc_code: 'FailedPrecondition' })).to.equal(1);
    expect(scrape.value('grpc_server_handling_seconds_count', labels)).to.equal(3);
    expect(scrape.value('credits_idempotent_replays_total', { grpc_service: labels.grpc_service, grpc_method: labels.grpc_method })).to.equal(1);
  });

  describe('traceCalls', () => {
    const exporter = new InMemorySpanExporter();
    before(() => {
      context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
      trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }));
    });
    after(() => {
      trace.disable();
      propagation.disable();
      context.disable();
    });
    beforeEach(() => exporter.reset());

    it("makes one SERVER span per call, the caller's span its parent, the rest of the call inside it", async () => {
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const parentId = '00f067aa0ba902b7';
      let inside: ReturnType<typeof traceFields> = {};
      await traceCalls()(callOf({ traceparent: `00-${traceId}-${parentId}-01` }), async () => {
        inside = traceFields();
        return { replayed: false, response: {} };
      });
      const [span] = exporter.getFinishedSpans();
      expect(exporter.getFinishedSpans()).to.have.length(1);
      expect(span!.name).to.equal('credits.v1.PromotionalCreditService/AddPromotionalCredits');
      expect(span!.kind).to.equal(1); // SpanKind.SERVER
      expect(span!.spanContext().traceId).to.equal(traceId);
      expect(span!.parentSpanContext?.spanId).to.equal(parentId);
      expect(span!.attributes).to.include({ 'rpc.system': 'grpc', 'rpc.service': 'credits.v1.PromotionalCreditService', 'rpc.method': 'AddPromotionalCredits', 'rpc.grpc.status_code': 0 });
      expect(inside).to.deep.equal({ trace_id: traceId, span_id: span!.spanContext().spanId });
      expect(traceFields(), 'nothing outside the call').to.deep.equal({});
    });

    it('marks only server-side codes as span errors, and starts a new trace without traceparent', async () => {
      await traceCalls()(callOf(), failing(status.INVALID_ARGUMENT));
      await traceCalls()(callOf(), failing(status.INTERNAL));
      const [invalid, internal] = exporter.getFinishedSpans();
      expect(invalid!.parentSpanContext).to.equal(undefined);
      expect([invalid!.attributes['rpc.grpc.status_code'], invalid!.status.code]).to.deep.equal([3, 0]);
      expect([internal!.attributes['rpc.grpc.status_code'], internal!.status.code]).to.deep.equal([13, 2]);
    });
  });
});
