import os from 'node:os';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ParentBasedSampler, AlwaysOnSampler, TracerProvider } from '@opentelemetry/sdk-trace';
import type { TracingConfig } from '../config';

export interface Tracing {
  /** Sends what is still buffered and stops exporting; the process then traces nothing. */
  shutdown(): Promise<void>;
}

/**
 * The SDK side of tracing, loaded only when tracing is configured (see
 * main.ts); the spans themselves are made through the API in
 * trace-context.ts.
 *
 * Turns tracing on for the process: an SDK tracer provider exporting over
 * OTLP/HTTP (the exporter reads OTEL_EXPORTER_OTLP_ENDPOINT and its friends
 * itself), registered as the global one together with an AsyncLocalStorage
 * context manager and the W3C trace-context propagator. Called only when an
 * endpoint is configured: otherwise no SDK is loaded, and the few API calls
 * left on the hot path (GroupCommit's context lookup) are the no-op API's.
 */
export function startTracing(config: TracingConfig): Tracing {
  const exporter = config.protocol === 'http/json' ? new OtlpJsonExporter() : new OtlpProtobufExporter();
  const resource = resourceFromAttributes({
    'service.name': config.serviceName,
    'service.version': serviceVersion(),
    'service.instance.id': `${os.hostname()}:${process.pid}`,
  }).merge(detectResources({ detectors: [envDetector] }));
  const provider = new TracerProvider({
    resource,
    // A caller's sampling decision (traceparent flags) is kept; calls that start a trace are all sampled.
    sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: config.scheduleDelayMs })],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return {
    shutdown: async () => {
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}

function serviceVersion(): string {
  try {
    return (require('../../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
