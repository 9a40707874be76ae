import { Client, credentials, Metadata, type MethodDefinition } from '@grpc/grpc-js';
import type { DataSource } from 'typeorm';
import { startGrpcServer } from '../src/grpc/server';
import { createLogger } from '../src/logger';
import { loadRpc } from './gen';
import type { ScenarioRpc } from './scenarios';
import { forReplay, installSqlRecorder, markGenerated, markResultDependencies, recordSql, type RecordedStatement } from './sql-recorder';

/** A sample call through the real server code, with the SQL it sent and its response bytes. */
export interface SampleCall {
  statements: RecordedStatement[];
  /** Whether a second identical call sent the same statements (generated values could be told apart). */
  compared: boolean;
  /** The encoded response (what the echo baseline answers with). */
  response: Buffer;
  /** The decoded response. */
  decoded: Record<string, unknown>;
}

/**
 * The real server code (src/grpc/server.ts) started inside the orchestrator
 * on 127.0.0.1:0, used before measuring: scenario setups call the service
 * through it, and one call of each scenario is recorded with every SQL
 * statement it sends (the same-SQL baselines replay exactly those).
 */
/** How the recording server starts: without housekeeping, whose statements (an expiry sweep's transaction) would be recorded as the sampled call's. */
export const RECORDING_SERVER_OPTIONS = { address: '127.0.0.1:0', housekeeping: false };

export async function startRecordingServer(dataSource: DataSource, apiKey: string) {
  installSqlRecorder();
  const grpc = await startGrpcServer({ dataSource, logger: createLogger('silent') }, RECORDING_SERVER_OPTIONS);
  const client = new Client(`127.0.0.1:${grpc.port}`, credentials.createInsecure());

  const invoke = (method: MethodDefinition<unknown, unknown>, request: unknown) =>
    new Promise<unknown>((resolve, reject) => {
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${apiKey}`);
      client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request, metadata, {}, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  const resolve = (rpc: ScenarioRpc) => {
    const loaded = loadRpc(rpc);
    if ('missing' in loaded) throw new Error(loaded.missing);
    return loaded;
  };
  const fromPartial = (rpc: ScenarioRpc, request: unknown) => resolve(rpc).method.requestDeserialize(resolve(rpc).encodeRequest(request));

  return {
    /** One call; the response decoded. */
    call: async (rpc: ScenarioRpc, request: unknown): Promise<Record<string, unknown>> =>
      (await invoke(resolve(rpc).method, fromPartial(rpc, request))) as Record<string, unknown>,
    /**
     * One call with the SQL it sent. The same request is sent twice: the
     * parameters that differ between the two are values the server made
     * (generated ids), which the replay must make afresh.
     */
    record: async (rpc: ScenarioRpc, request: unknown): Promise<SampleCall> => {
      const { method } = resolve(rpc);
      const message = fromPartial(rpc, request);
      const { result, statements } = await recordSql(() => invoke(method, message));
      const again = await recordSql(() => invoke(method, message)).catch(() => undefined);
      markResultDependencies(statements);
      const compared = again ? markGenerated(statements, again.statements) : false;
      return { statements: forReplay(statements), compared, response: method.responseSerialize(result), decoded: result as Record<string, unknown> };
    },
    close: async () => {
      client.close();
      await grpc.shutdown(5000);
    },
  };
}

export type RecordingServer = Awaited<ReturnType<typeof startRecordingServer>>;
