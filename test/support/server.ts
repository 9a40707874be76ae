import { credentials, InterceptingCall, Metadata, type CallOptions, type Interceptor, type ServiceError } from '@grpc/grpc-js';
import type { DataSource } from 'typeorm';
import * as couponService from '../../gen/credits/v1/coupon_service';
import * as creditService from '../../gen/credits/v1/credit_service';
import * as promotionalCreditService from '../../gen/credits/v1/promotional_credit_service';
import { startGrpcServer, type GrpcServer } from '../../src/grpc/server';
import { createLogger } from '../../src/logger';
import { spawnServer, freePort, type ChildServer } from './child-server';
import { openTestDataSource, testDatabaseUrl } from './database';

/** A real server on 127.0.0.1:<random port> over the test database. */
export interface TestServer {
  address: string;
  dataSource: DataSource;
  grpc: GrpcServer;
  close(): Promise<void>;
}

export async function startTestServer(
  options: { poolSize?: number; authCacheMs?: number; expirySweepSeconds?: number; eventCursorVersion?: 1 | 2 } = {},
): Promise<TestServer> {
  const dataSource = await openTestDataSource(options.poolSize ?? 20);
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  // No key cache unless asked: tests revoke keys and expect the very next call
  // to be refused, while a pushed revocation takes a moment to arrive.
  const grpc = await startGrpcServer({ dataSource, logger }, {
    address: '127.0.0.1:0',
    authCacheMs: options.authCacheMs ?? 0,
    // Tests of expiry use expirations a second or two ahead; the sweep must come soon after.
    expirySweepSeconds: options.expirySweepSeconds ?? 1,
    eventCursorVersion: options.eventCursorVersion,
  });
  return {
    address: `127.0.0.1:${grpc.port}`,
    dataSource,
    grpc,
    close: async () => {
      await grpc.shutdown(5_000);
      await dataSource.destroy();
    },
  };
}

let shared: Promise<TestServer> | undefined;

/** One server shared by the suites that need nothing special. */
export function sharedServer(): Promise<TestServer> {
  shared ??= startTestServer();
  return shared;
}

let replica: Promise<ChildServer> | undefined;
/** Set while stopReplicaServer stops it: that exit is expected. */
let stoppingReplica = false;

/**
 * A second server in its own process (`credits serve`) on the same database:
 * concurrency tests spread their calls over it and the shared server to show
 * that every invariant lives in PostgreSQL, not in a process.
 */
export function replicaServer(): Promise<ChildServer> {
  replica ??= (async () => {
    const server = await spawnServer(await testDatabaseUrl(), await freePort());
    // Every later suite that uses it would fail with UNAVAILABLE: say why it died, once, where the run's output shows it.
    void server.exited.then(({ code, signal }) => {
      if (stoppingReplica) return;
      process.stderr.write(`\nthe replica server (credits serve on ${server.address}) exited unexpectedly (code ${code}, signal ${signal}); its last output:\n${server.output().slice(-4000)}\n`);
    });
    return server;
  })();
  return replica;
}

export async function stopReplicaServer(): Promise<void> {
  if (!replica) return;
  const server = await replica;
  replica = undefined;
  if (server.process.exitCode === null && server.process.signalCode === null) {
    stoppingReplica = true;
    server.process.kill('SIGTERM');
    await server.exited;
    stoppingReplica = false;
  }
}

export async function stopSharedServer(): Promise<void> {
  if (!shared) return;
  const server = await shared;
  shared = undefined;
  await server.close();
}

/** A client interceptor that sends `authorization: Bearer <key>` on every call. */
export function apiKeyInterceptor(apiKey: string | undefined): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (apiKey !== undefined) metadata.set('authorization', `Bearer ${apiKey}`);
        next(metadata, listener);
      },
    });
}

type UnaryMethod<Req, Res> = (request: Req, metadata: Metadata, options: Partial<CallOptions>, callback: (err: ServiceError | null, res: Res) => void) => unknown;

/** Promise form of a generated client's unary method. */
export function unary<Req, Res>(method: UnaryMethod<Req, Res>, self: object, request: Req, metadata = new Metadata()): Promise<Res> {
  return new Promise((resolve, reject) => method.call(self, request, metadata, {}, (err, res) => (err ? reject(err) : resolve(res))));
}

/** The generated clients with promise-returning methods, for tests. */
export function promotionalCredits(address: string, apiKey: string | undefined) {
  const client = new promotionalCreditService.PromotionalCreditServiceClient(address, credentials.createInsecure(), {
    interceptors: [apiKeyInterceptor(apiKey)],
  });
  return promisify(client, promotionalCreditService);
}

export function coupons(address: string, apiKey: string | undefined) {
  const client = new couponService.CouponServiceClient(address, credentials.createInsecure(), { interceptors: [apiKeyInterceptor(apiKey)] });
  return promisify(client, couponService);
}

export function credits(address: string, apiKey: string | undefined) {
  const client = new creditService.CreditServiceClient(address, credentials.createInsecure(), { interceptors: [apiKeyInterceptor(apiKey)] });
  return promisify(client, creditService);
}

export type PromotionalCreditClient = ReturnType<typeof promotionalCredits>;
export type CouponClient = ReturnType<typeof coupons>;
export type CreditClient = ReturnType<typeof credits>;

/** A request where any field may be left out, as the generated `fromPartial` takes it. */
export type PartialRequest<T> = T extends Date | bigint | string | number | boolean | Buffer
  ? T
  : T extends Array<infer U>
    ? Array<PartialRequest<U>>
    : T extends object
      ? { [K in keyof T]?: PartialRequest<T[K]> }
      : T;

/**
 * Wraps every unary method of a generated grpc-js client as `(request,
 * metadata?) => Promise`. Requests may leave fields out: the service module's
 * `<Method>Request.fromPartial` fills the defaults (as @credits/client does),
 * so tests only spell out what they are about.
 */
export function promisify<C extends { close(): void }>(client: C, messages: object) {
  type Methods = {
    [K in keyof C as C[K] extends (req: infer _Req, md: Metadata, opts: Partial<CallOptions>, cb: (err: ServiceError | null, res: infer _Res) => void) => unknown ? K : never]: C[K] extends (
      req: infer Req,
      md: Metadata,
      opts: Partial<CallOptions>,
      cb: (err: ServiceError | null, res: infer Res) => void,
    ) => unknown
      ? (request: PartialRequest<Req>, metadata?: Metadata) => Promise<Res>
      : never;
  };
  const codecs = messages as Record<string, { fromPartial?(request: unknown): unknown }>;
  return new Proxy(client, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (property === 'close' || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
      const name = String(property);
      const codec = codecs[`${name[0]!.toUpperCase()}${name.slice(1)}Request`];
      return (request: unknown, metadata?: Metadata) =>
        unary(value as UnaryMethod<unknown, unknown>, target, codec?.fromPartial ? codec.fromPartial(request) : request, metadata);
    },
  }) as unknown as Methods & { close(): void };
}
