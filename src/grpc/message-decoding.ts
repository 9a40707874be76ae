import { BinaryReader } from '@bufbuild/protobuf/wire';
import * as v1 from '../../gen/index.credits.v1';
import type { RequestProblem } from './pipeline';
import { creditsMethods } from './reflection';

/** A request whose string field's bytes are not UTF-8 (protobuf's `string` must be). */
export class InvalidUtf8 extends Error {
  constructor() {
    super('a string field is not valid UTF-8');
  }

  /** The problem to answer: the decoder cannot tell which field it was reading. */
  get problem(): RequestProblem {
    return { field: '', description: this.message, hint: 'send text as UTF-8' };
  }
}

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes a string field's bytes, refusing what is not UTF-8; a leading U+FEFF is text, as the library reads it. */
function strictUtf8(bytes: Uint8Array): string {
  try {
    return fatal.decode(bytes);
  } catch {
    throw new InvalidUtf8();
  }
}

/**
 * The request decoder of every credits.v1 method (by its path), which
 * refuses a string that is not UTF-8 (InvalidUtf8) where ts-proto's own
 * deserializers read it with U+FFFD in place of the bad bytes: a
 * description or a metadata value was stored changed, without a word, and
 * the idempotency fingerprint of two different requests could agree. The
 * generated decode reads through the BinaryReader it is given, nested
 * messages included, so one reader with a strict UTF-8 decoder covers every
 * string of the request; ASCII strings never reach the decoder.
 */
export function requestDecoders(): Map<string, (bytes: Uint8Array) => unknown> {
  const decoders = new Map<string, (bytes: Uint8Array) => unknown>();
  const messages = v1 as unknown as Record<string, { decode(input: BinaryReader): unknown } | undefined>;
  for (const { path, input } of creditsMethods()) {
    const type = input.typeName.startsWith('credits.v1.') ? messages[input.typeName.slice('credits.v1.'.length)] : undefined;
    if (typeof type?.decode !== 'function') continue; // its generated deserializer serves
    decoders.set(path, (bytes) => type.decode(new BinaryReader(bytes, strictUtf8)));
  }
  return decoders;
}
