import type { DescField, DescMessage } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { RequestProblem } from './pipeline';
import { creditsMethods } from './reflection';
import { valueOfEntry } from './reserved-map-keys';

const TIMESTAMP = 'google.protobuf.Timestamp';
const MAX_NANOS = 999_999_999;

/**
 * For each credits.v1 method whose request holds a google.protobuf.Timestamp
 * (at any depth), a check of the request's bytes: the first Timestamp whose
 * nanos are outside 0..999,999,999, or undefined. ts-proto turns a Timestamp
 * into a Date before the service sees it, as seconds * 1000 + nanos / 1e6:
 * nanos of 2,000,000,000 became two seconds later and a negative one
 * earlier, silently (the type says nanos is 0..999,999,999, and protobuf's
 * own libraries refuse the rest). Seconds outside the type's years 1 to
 * 9999 show in the Date, and the use cases' checks answer them with the
 * request's other violations (checkTime). The walk reads only the fields
 * that can lead to a Timestamp: ~0.4 µs for an Add (its decoding ~0.3).
 */
export function timestampChecks(): Map<string, (bytes: Uint8Array) => RequestProblem | undefined> {
  const checks = new Map<string, (bytes: Uint8Array) => RequestProblem | undefined>();
  const routes = new Map<DescMessage, Route | undefined>();
  for (const { path, input } of creditsMethods()) {
    const route = routeOf(input, routes);
    if (route) checks.set(path, (bytes) => problemIn(route, bytes, ''));
  }
  return checks;
}

/** The fields of a message that lead to a Timestamp, by number: the Timestamps themselves, or the messages that hold one. */
type Route = Map<number, { field: DescField; timestamp: boolean; inner: Route | undefined }>;

/** A message's route, or undefined when no Timestamp is under it (memoized; a message that refers back to itself is followed once). */
function routeOf(message: DescMessage, routes: Map<DescMessage, Route | undefined>): Route | undefined {
  if (routes.has(message)) return routes.get(message);
  const route: Route = new Map();
  routes.set(message, route); // while it is being built: a field leading back here leads somewhere
  for (const field of message.fields) {
    const inner = messageOf(field);
    if (inner === undefined) continue;
    if (inner.typeName === TIMESTAMP) route.set(field.number, { field, timestamp: true, inner: undefined });
    else {
      const next = routeOf(inner, routes);
      if (next) route.set(field.number, { field, timestamp: false, inner: next });
    }
  }
  const found = route.size > 0 ? route : undefined;
  routes.set(message, found);
  return found;
}

/** The message type of a message field, an element of a repeated one, or a map's value; undefined for scalars. */
function messageOf(field: DescField): DescMessage | undefined {
  if (field.fieldKind === 'message') return field.message;
  if (field.fieldKind === 'list' && field.listKind === 'message') return field.message;
  if (field.fieldKind === 'map' && field.mapKind === 'message') return field.message;
  return undefined;
}

function problemIn(route: Route, bytes: Uint8Array, prefix: string): RequestProblem | undefined {
  const reader = new BinaryReader(bytes);
  let seen: Map<number, number> | undefined; // elements of each repeated field so far
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const step = route.get(number);
    if (step === undefined || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, number);
      continue;
    }
    const { field } = step;
    let path = `${prefix}${field.name}`;
    if (field.fieldKind === 'list') {
      seen ??= new Map();
      const index = seen.get(number) ?? 0;
      seen.set(number, index + 1);
      path += `[${index}]`;
    }
    let value = reader.bytes();
    if (field.fieldKind === 'map') {
      path += '[…]';
      value = valueOfEntry(value);
    }
    // A route under construction (a message holding itself) is complete by the time a request is read.
    const problem = step.timestamp ? timestampProblem(value, path) : problemIn(step.inner!, value, `${path}.`);
    if (problem) return problem;
  }
  return undefined;
}

function timestampProblem(bytes: Uint8Array, field: string): RequestProblem | undefined {
  const reader = new BinaryReader(bytes);
  let nanos = 0;
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 2 && wireType === WireType.Varint) nanos = reader.int32();
    else reader.skip(wireType, number);
  }
  if (nanos >= 0 && nanos <= MAX_NANOS) return undefined;
  return {
    field,
    description: `is not a valid google.protobuf.Timestamp: nanos must be 0 to 999999999, not ${nanos}`,
    hint: 'send one normalized as the type says (whole seconds in `seconds`, nanos 0 to 999999999)',
  };
}
