import type { Metadata } from '@grpc/grpc-js';
import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type SpanOptions, type TextMapGetter } from '@opentelemetry/api';
import type { Client as PgClient } from 'pg';

/*
 * Spans and trace context through the OpenTelemetry API only: without a
 * registered SDK (tracing off) these are the API's no-ops, and the server
 * does not even put them on its call path (see startGrpcServer).
 */

/** The instrumentation scope of every span the service makes. */
export const TRACER_NAME = 'credits';

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (metadata) => Object.keys(metadata.getMap()),
  get: (metadata, key) => {
    const values = metadata.get(key);
    return values.length === 0 ? undefined : values.map(String);
  },
};

/** The caller's trace context from its `traceparent` / `tracestate` metadata (the root context when none or invalid). */
export function callerContext(metadata: Metadata): Context {
  return propagation.extract(context.active(), metadata, metadataGetter);
}

/** Status codes that make a gRPC server span an error (OpenTelemetry RPC semantic conventions). */
const SERVER_ERROR_CODES = new Set([2 /* UNKNOWN */, 4 /* DEADLINE_EXCEEDED */, 12 /* UNIMPLEMENTED */, 13 /* INTERNAL */, 14 /* UNAVAILABLE */, 15 /* DATA_LOSS */]);

/**
 * Runs one call under its server span (`credits.v1.Service/Method`, kind
 * SERVER, child of the caller's span when it sent `traceparent`), with the
 * rpc.* attributes of the semantic conventions; `work` answers the status
 * code the caller gets.
 */
export async function inServerSpan<T>(path: string, metadata: Metadata, work: () => Promise<T>, codeOf: (result: T) => number): Promise<T> {
  const slash = path.lastIndexOf('/');
  const service = path.slice(1, slash);
  const method = path.slice(slash + 1);
  return inSpan(
    `${service}/${method}`,
    { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method } },
    callerContext(metadata),
    work,
    (span, result) => {
      const code = codeOf(result);
      span.setAttribute('rpc.grpc.status_code', code);
      if (SERVER_ERROR_CODES.has(code)) span.setStatus({ code: SpanStatusCode.ERROR });
    },
  );
}

/**
 * Runs `work` in a new span, child of `parent`, and ends it after; `settled`
 * may describe the result on the span; a throw records it and marks the span
 * an error.
 */
export async function inSpan<T>(name: string, options: SpanOptions, parent: Context, work: () => Promise<T>, settled?: (span: Span, result: T) => void): Promise<T> {
  const span = trace.getTracer(TRACER_NAME).startSpan(name, options, parent);
  try {
    const result = await context.with(trace.setSpan(parent, span), work);
    settled?.(span, result);
    return result;
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR });
    throw err;
  } finally {
    span.end();
  }
}

/** `trace_id` and `span_id` of the active span, for log lines (a pino mixin); nothing outside a span. */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

const MAX_STATEMENT_CHARS = 4096;

type QueryArgs = [unknown, ...unknown[]];

/**
 * A pg Client class for the pool whose statements, when run inside a traced
 * call, are spans of their own (kind CLIENT, the database semantic
 * conventions: db.system, db.query.text with $n placeholders — values are
 * never recorded). Statements outside any span (the sweep, migrations) are
 * not traced. Handed to the pool only while tracing is on.
 */
export function tracedPgClient(Base: typeof PgClient, database: string | undefined): typeof PgClient {
  const tracer = trace.getTracer(TRACER_NAME);
  const query = Base.prototype.query as (this: PgClient, ...args: QueryArgs) => unknown;
  class TracedPgClient extends Base {}
  Object.defineProperty(TracedPgClient.prototype, 'query', {
    configurable: true,
    writable: true,
    value: function tracedQuery(this: PgClient, ...args: QueryArgs): unknown {
      const parent = context.active();
      const first = args[0] as string | { text?: unknown; name?: unknown; submit?: unknown } | undefined;
      const text = typeof first === 'string' ? first : first?.text;
      if (trace.getSpan(parent) === undefined || typeof text !== 'string' || (typeof first === 'object' && typeof first.submit === 'function')) {
        return query.apply(this, args);
      }
      const operation = /^\s*([A-Za-z]+)/.exec(text)?.[1]?.toUpperCase() ?? 'QUERY';
      const prepared = typeof first === 'object' && typeof first.name === 'string' ? first.name : undefined;
      const attributes: Attributes = {
        'db.system': 'postgresql',
        'db.system.name': 'postgresql',
        'db.operation.name': operation,
        'db.query.text': text.length > MAX_STATEMENT_CHARS ? `${text.slice(0, MAX_STATEMENT_CHARS)}…` : text,
      };
      if (database) attributes['db.namespace'] = database;
      if (prepared) attributes['db.query.summary'] = prepared;
      const span = tracer.startSpan(prepared ? `${operation} ${prepared}` : operation, { kind: SpanKind.CLIENT, attributes }, parent);
      const finish = (err: unknown) => {
        if (err) {
          span.recordException(err as Error);
          span.setStatus({ code: SpanStatusCode.ERROR });
          const sqlState = (err as { code?: unknown }).code;
          if (typeof sqlState === 'string') span.setAttribute('db.response.status_code', sqlState);
        }
        span.end();
      };
      const last = args[args.length - 1];
      if (typeof last === 'function') {
        args[args.length - 1] = (err: unknown, result: unknown) => {
          finish(err);
          (last as (err: unknown, result: unknown) => void)(err, result);
        };
        return query.apply(this, args);
      }
      const result = query.apply(this, args) as Promise<unknown>;
      result.then(
        () => finish(undefined),
        (err: unknown) => finish(err ?? new Error('query failed')),
      );
      return result;
    },
  });
  return TracedPgClient;
}
