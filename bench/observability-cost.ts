import { Metadata } from '@grpc/grpc-js';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { recordCallMetrics, traceCalls } from '../src/grpc/middleware';
import type { Call, Middleware, Next } from '../src/grpc/pipeline';
import { Metrics } from '../src/observability/metrics';
import { TRACER_NAME } from '../src/observability/trace-context';
import { startTracing } from '../src/observability/tracing';
import { startOtlpSink } from './otlp-sink';

/**
 * What the metrics and tracing middleware cost per call in CPU time, in
 * one process: a handler that does nothing, run N times bare and N times
 * behind each middleware; CPU time (process.cpuUsage), not wall time, so a
 * busy machine slows it down but barely changes the figures. Tracing makes
 * the server span and one statement-like child span per call and exports
 * them over OTLP/HTTP protobuf to a sink in this process (serialization
 * included). It leaves out what only a real server pays: AsyncLocalStorage's
 * promise hooks on every promise of the call (the load benchmark's add-otlp
 * run shows the whole cost).
 *
 *   node dist/bench/observability-cost.js [calls]
 */
async function main(): Promise<void> {
  const calls = Number(process.argv[2] ?? 100_000);
  const call: Call = {
    path: '/credits.v1.PromotionalCreditService/AddPromotionalCredits',
    method: { path: '', responseSerialize: () => Buffer.alloc(0), responseDeserialize: () => ({}) },
    scope: 'write',
    request: {},
    metadata: new Metadata(),
    requestId: 'bench',
    gone: () => false,
    sharesTransaction: false,
  };
  const bare: Next = async () => ({ replayed: false, response: {} });
  const withStatement: Next = async () => {
    // One child span, as a call's statement makes (kind CLIENT, the db.* attributes).
    const span = trace.getTracer(TRACER_NAME).startSpan(
      'SELECT',
      { kind: SpanKind.CLIENT, attributes: { 'db.system': 'postgresql', 'db.system.name': 'postgresql', 'db.operation.name': 'SELECT', 'db.query.text': 'SELECT promotional_credit_apply($1)' } },
      context.active(),
    );
    span.end();
    return { replayed: false, response: {} };
  };
  const cpuPerCall = async (middleware: Middleware | undefined, next: Next): Promise<number> => {
    const started = process.cpuUsage();
    for (let i = 0; i < calls; i++) {
      await (middleware ? middleware(call, next) : next(call));
      // Let the exporter's timers and sockets run, as they would between calls.
      if (i % 256 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    const used = process.cpuUsage(started);
    return (used.user + used.system) / calls;
  };

  const metrics = new Metrics();
  const sink = await startOtlpSink();
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = sink.endpoint;
  const rows: Array<[string, number]> = [];
  for (let round = 0; round < 3; round++) {
    const base = await cpuPerCall(undefined, bare);
    const metered = await cpuPerCall(recordCallMetrics(metrics), bare);
    const baseWithChild = await cpuPerCall(undefined, withStatement);
    const tracing = startTracing({ protocol: 'http/protobuf', serviceName: 'credits-bench', scheduleDelayMs: 1000 });
    const traced = await cpuPerCall(traceCalls(), withStatement);
    await tracing.shutdown();
    rows.push(['metrics', metered - base], ['tracing (server span + one statement span, exported)', traced - baseWithChild]);
    console.log(`round ${round + 1}: metrics ${(metered - base).toFixed(1)} µs/call, tracing ${(traced - baseWithChild).toFixed(1)} µs/call`);
  }
  const received = sink.received();
  await sink.close();
  for (const name of ['metrics', 'tracing (server span + one statement span, exported)']) {
    const values = rows.filter(([n]) => n === name).map(([, v]) => v).sort((a, b) => a - b);
    console.log(`${name}: median ${values[1]!.toFixed(1)} µs of CPU per call`);
  }
  console.log(`(the sink received ${received.requests} export requests)`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
