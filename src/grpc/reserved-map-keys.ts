import type { DescMessage } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { RequestProblem } from './pipeline';
import { creditsMethods } from './reflection';

/**
 * A map key no JavaScript decoder keeps: ts-proto (and protobufjs) decode a
 * map into a plain object, where `message.metadata['__proto__'] = value`
 * sets the prototype instead of adding a key, so the pair vanishes: it was
 * neither stored nor usable as a filter (one matched everything).
 */
export const RESERVED_MAP_KEY = '__proto__';
const NEEDLE = Buffer.from(RESERVED_MAP_KEY, 'utf8');

/**
 * For each credits.v1 method path, a check of its request's bytes: the
 * first map entry whose key is RESERVED_MAP_KEY, named by its path (proto
 * field names, e.g. `metadata["__proto__"]`), or undefined. It walks the
 * wire format only when the bytes contain the key at all (a memory search:
 * the usual request pays nothing more). The walk follows the request's
 * message type from buf's descriptor set, so it sees every map at any depth.
 */
export function reservedMapKeyChecks(): Map<string, (bytes: Buffer) => RequestProblem | undefined> {
  const checks = new Map<string, (bytes: Buffer) => RequestProblem | undefined>();
  for (const { path, input } of creditsMethods()) {
    checks.set(path, (bytes) => {
      const field = bytes.includes(NEEDLE) ? reservedKeyIn(input, bytes, '') : undefined;
      if (field === undefined) return undefined;
      return { field, description: `key ${JSON.stringify(RESERVED_MAP_KEY)} is reserved: JavaScript decoders drop it`, hint: 'use another key' };
    });
  }
  return checks;
}

/** The path of the first map entry keyed RESERVED_MAP_KEY in a message's bytes (already decoded once, so well formed). */
function reservedKeyIn(message: DescMessage, bytes: Uint8Array, prefix: string): string | undefined {
  const reader = new BinaryReader(bytes);
  const seen = new Map<number, number>(); // elements of each repeated field so far
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = message.fields.find((f) => f.number === number);
    if (field === undefined || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, number);
      continue;
    }
    let path = `${prefix}${field.name}`;
    if (field.fieldKind === 'list') {
      const index = seen.get(number) ?? 0;
      seen.set(number, index + 1);
      path += `[${index}]`;
    }
    if (field.fieldKind === 'map') {
      const entry = reader.bytes();
      if (keyOfEntry(entry) === RESERVED_MAP_KEY) return `${path}[${JSON.stringify(RESERVED_MAP_KEY)}]`;
      if (field.mapKind === 'message') {
        const found = reservedKeyIn(field.message, valueOfEntry(entry), `${path}.`);
        if (found) return found;
      }
    } else if (field.fieldKind === 'message' || (field.fieldKind === 'list' && field.listKind === 'message')) {
      const found = reservedKeyIn(field.message, reader.bytes(), `${path}.`);
      if (found) return found;
    } else {
      reader.skip(wireType, number);
    }
  }
  return undefined;
}

/** A map entry's key (field 1), when it is a string. */
function keyOfEntry(entry: Uint8Array): string | undefined {
  const reader = new BinaryReader(entry);
  let key: string | undefined;
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 1 && wireType === WireType.LengthDelimited) key = reader.string();
    else reader.skip(wireType, number);
  }
  return key;
}

/** A map entry's value (field 2) as bytes (empty when absent). */
export function valueOfEntry(entry: Uint8Array): Uint8Array {
  const reader = new BinaryReader(entry);
  let value: Uint8Array = new Uint8Array(0);
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 2 && wireType === WireType.LengthDelimited) value = reader.bytes();
    else reader.skip(wireType, number);
  }
  return value;
}
