import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BinaryReader } from '@bufbuild/protobuf/wire';

/** A span as an OTLP receiver sees it (the fields the tests look at). */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  links: Array<{ traceId: string; spanId: string }>;
  resource: Record<string, string | number | boolean>;
}

export interface OtlpReceiver {
  /** `http://127.0.0.1:<port>`, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: string;
  spans: ReceivedSpan[];
  /** Export requests received (any path), with their content type. */
  requests: Array<{ path: string; contentType: string | undefined }>;
  close(): Promise<void>;
}

/**
 * A real OTLP/HTTP trace receiver on a local port: POST /v1/traces with an
 * ExportTraceServiceRequest in protobuf (decoded here with the wire reader
 * of @bufbuild/protobuf, field numbers from opentelemetry-proto) or JSON.
 * Answers an empty ExportTraceServiceResponse, as a collector does.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: OtlpReceiver['requests'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const contentType = req.headers['content-type'];
      requests.push({ path: req.url ?? '', contentType });
      try {
        if (req.url === '/v1/traces') spans.push(...(contentType?.includes('json') ? decodeJson(body) : decodeProtobuf(body)));
      } catch (err) {
        res.writeHead(400).end(String(err));
        return;
      }
      if (contentType?.includes('json')) res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

type Attributes = ReceivedSpan['attributes'];

/** Reads a length-delimited message's fields: `each(fieldNo, wireType, reader)` must consume the field (or skip it). */
function fields(bytes: Uint8Array, each: (fieldNo: number, reader: BinaryReader, skip: () => void) => void): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    let consumed = false;
    const skip = () => {
      consumed = true;
      reader.skip(wireType);
    };
    const before = reader.pos;
    each(fieldNo, reader, skip);
    if (!consumed && reader.pos === before) reader.skip(wireType);
  }
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

function decodeProtobuf(body: Uint8Array): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  fields(body, (n, r) => {
    if (n !== 1) return; // resource_spans
    const resource: Attributes = {};
    const scopeSpans: Uint8Array[] = [];
    fields(r.bytes(), (m, rs) => {
      if (m === 1) {
        fields(rs.bytes(), (k, res) => {
          if (k === 1) Object.assign(resource, keyValue(res.bytes()));
        });
      } else if (m === 2) scopeSpans.push(rs.bytes());
    });
    for (const scope of scopeSpans) {
      fields(scope, (m, ss) => {
        if (m === 2) spans.push({ ...span(ss.bytes()), resource });
      });
    }
  });
  return spans;
}

function span(bytes: Uint8Array): Omit<ReceivedSpan, 'resource'> {
  const s: Omit<ReceivedSpan, 'resource'> = { traceId: '', spanId: '', parentSpanId: '', name: '', kind: 0, attributes: {}, statusCode: 0, links: [] };
  fields(bytes, (n, r, skip) => {
    if (n === 1) s.traceId = hex(r.bytes());
    else if (n === 2) s.spanId = hex(r.bytes());
    else if (n === 4) s.parentSpanId = hex(r.bytes());
    else if (n === 5) s.name = r.string();
    else if (n === 6) s.kind = r.int32();
    else if (n === 9) Object.assign(s.attributes, keyValue(r.bytes()));
    else if (n === 13) {
      const link = { traceId: '', spanId: '' };
      fields(r.bytes(), (k, l) => {
        if (k === 1) link.traceId = hex(l.bytes());
        else if (k === 2) link.spanId = hex(l.bytes());
      });
      s.links.push(link);
    } else if (n === 15) {
      fields(r.bytes(), (k, st) => {
        if (k === 3) s.statusCode = st.int32();
      });
    } else skip();
  });
  return s;
}

/** One KeyValue as { key: value } (string, bool, int or double values). */
function keyValue(bytes: Uint8Array): Attributes {
  let key = '';
  let value: string | number | boolean = '';
  fields(bytes, (n, r) => {
    if (n === 1) key = r.string();
    else if (n === 2) {
      fields(r.bytes(), (k, v) => {
        if (k === 1) value = v.string();
        else if (k === 2) value = v.bool();
        else if (k === 3) value = Number(v.int64());
        else if (k === 4) value = v.double();
      });
    }
  });
  return { [key]: value };
}

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
}

function decodeJson(body: Buffer): ReceivedSpan[] {
  const attrs = (list: Array<{ key: string; value: JsonAnyValue }> = []): Attributes =>
    Object.fromEntries(list.map(({ key, value }) => [key, value.stringValue ?? value.boolValue ?? (value.intValue !== undefined ? Number(value.intValue) : value.doubleValue ?? '')]));
  const request = JSON.parse(body.toString('utf8')) as {
    resourceSpans?: Array<{
      resource?: { attributes?: Array<{ key: string; value: JsonAnyValue }> };
      scopeSpans?: Array<{
        spans?: Array<{
          traceId: string;
          spanId: string;
          parentSpanId?: string;
          name: string;
          kind: number;
          attributes?: Array<{ key: string; value: JsonAnyValue }>;
          status?: { code?: number };
          links?: Array<{ traceId: string; spanId: string }>;
        }>;
      }>;
    }>;
  };
  return (request.resourceSpans ?? []).flatMap((rs) =>
    (rs.scopeSpans ?? []).flatMap((ss) =>
      (ss.spans ?? []).map((s) => ({
        traceId: s.traceId,
        spanId: s.spanId,
        parentSpanId: s.parentSpanId ?? '',
        name: s.name,
        kind: s.kind,
        attributes: attrs(s.attributes),
        statusCode: s.status?.code ?? 0,
        links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
        resource: attrs(rs.resource?.attributes),
      })),
    ),
  );
}
