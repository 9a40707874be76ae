import { randomUUID } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';

/** Call metadata carrying an idempotency key: `key`, or a new one of its own. */
export function keyed(key: string = randomUUID()): Metadata {
  const metadata = new Metadata();
  metadata.set('idempotency-key', key);
  return metadata;
}
