import fs from 'node:fs';
import path from 'node:path';
import type { MethodDefinition } from '@grpc/grpc-js';
import type { ScenarioRpc } from './scenarios';

/** The compiled gen/ (dist/gen next to dist/bench). */
const GEN_ROOT = path.join(__dirname, '..', 'gen');

interface MessageType {
  fromPartial(object: unknown): unknown;
}

export interface LoadedRpc {
  method: MethodDefinition<unknown, unknown>;
  /** Encodes a plain request object (missing fields take their defaults). */
  encodeRequest(request: unknown): Buffer;
}

/**
 * Looks a method up in the generated code at run time, so scenarios of a
 * service that is not generated yet are skipped rather than breaking the
 * build. Answers the reason when it is missing.
 */
export function loadRpc(rpc: ScenarioRpc): LoadedRpc | { missing: string } {
  const file = path.join(GEN_ROOT, `${rpc.module}.js`);
  if (!fs.existsSync(file)) return { missing: `gen/${rpc.module}.ts does not exist yet` };
  const mod = require(file) as Record<string, unknown>;
  const service = mod[rpc.service] as Record<string, MethodDefinition<unknown, unknown>> | undefined;
  const method = service?.[rpc.method];
  const type = mod[rpc.requestType] as MessageType | undefined;
  if (!method || !type) return { missing: `gen/${rpc.module}.ts has no ${rpc.service}.${rpc.method} / ${rpc.requestType}` };
  return { method, encodeRequest: (request) => method.requestSerialize(type.fromPartial(request)) };
}
