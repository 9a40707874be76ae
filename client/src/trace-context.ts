import type { Metadata } from '@grpc/grpc-js';

/** The few parts of @opentelemetry/api this uses (typed here so the package's types never need it). */
interface OtelApi {
  context: { active(): unknown };
  trace: { getSpanContext(context: unknown): SpanContext | undefined };
  isSpanContextValid(spanContext: SpanContext): boolean;
}

interface SpanContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  traceState?: { serialize(): string };
}

let api: OtelApi | null | undefined;

/** @opentelemetry/api when the application has it (an optional peer dependency), else null. */
function otel(): OtelApi | null {
  if (api === undefined) {
    try {
      api = require('@opentelemetry/api') as OtelApi;
    } catch {
      api = null;
    }
  }
  return api;
}

/**
 * W3C `traceparent` (and `tracestate`) of the caller's active span, so the
 * service's spans join the caller's trace. Nothing when @opentelemetry/api
 * is not installed or no span is active. Written from the span context
 * itself rather than through the global propagator, so the header goes out
 * whatever propagators the application registered (the service reads W3C).
 */
export function addTraceContext(metadata: Metadata): void {
  const otelApi = otel();
  if (!otelApi) return;
  const spanContext = otelApi.trace.getSpanContext(otelApi.context.active());
  if (!spanContext || !otelApi.isSpanContextValid(spanContext)) return;
  metadata.set('traceparent', `00-${spanContext.traceId}-${spanContext.spanId}-${(spanContext.traceFlags & 0xff).toString(16).padStart(2, '0')}`);
  const state = spanContext.traceState?.serialize();
  if (state) metadata.set('tracestate', state);
}
