import { randomUUID } from 'node:crypto';
import {
  Metadata,
  type MethodDefinition,
  type sendUnaryData,
  type Server,
  type ServerUnaryCall,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { WorkRunner } from '../db/unit-of-work';
import type { Scope } from '../tenants/api-key.entity';
import type { Principal } from '../tenants/principal';
import { toCallerError, toServiceError } from './error-status';
import { REPLAYED_HEADER } from './middleware';
import { MalformedRequest, type Call, type Middleware, type Outcome } from './pipeline';

/** What a handler knows about the call besides its request. */
export interface CallContext {
  principal: Principal;
  requestId: string;
  /** Runs the use case's database work (see WorkRunner). */
  run: WorkRunner;
}

export type Handler<Req, Res> = (request: Req, context: CallContext) => Promise<Res>;

/**
 * The adapter between grpc-js and the call pipeline (nice-grpc's
 * createServerAdapter, for unary calls): each call becomes a `Call`, runs
 * through the middleware to its handler, and its outcome becomes grpc-js's
 * callback: the response with metadata `x-request-id` (and
 * `idempotent-replayed: true` for a replay), or a status with google.rpc
 * details.
 */
export class Rpc {
  private readonly methods = new Map<string, MethodDefinition<unknown, unknown>>();

  constructor(private readonly pipeline: Middleware) {}

  /**
   * Registers a service; its method definitions serve idempotent replays (they
   * encode responses). A request that is not a decodable protobuf message
   * reaches the pipeline as a MalformedRequest (see refuseMalformed).
   */
  addService<S extends ServiceDefinition>(server: Server, definition: S, implementation: UntypedServiceImplementation): void {
    const lenient: Record<string, MethodDefinition<unknown, unknown>> = {};
    for (const [name, method] of Object.entries(definition)) {
      this.methods.set(method.path, method as MethodDefinition<unknown, unknown>);
      lenient[name] = {
        ...(method as MethodDefinition<unknown, unknown>),
        requestDeserialize: (bytes: Buffer) => {
          try {
            return method.requestDeserialize(bytes);
          } catch {
            return new MalformedRequest(method.path);
          }
        },
      };
    }
    server.addService(lenient, implementation);
  }

  read<Req, Res>(handler: Handler<Req, Res>) {
    return this.unary('read', handler, false);
  }

  /**
   * `sharedTransaction`: with an idempotency key, the call may share its
   * transaction with other such calls (see Idempotency.execute for what the
   * handler must promise).
   */
  write<Req, Res>(handler: Handler<Req, Res>, options: { sharedTransaction?: boolean } = {}) {
    return this.unary('write', handler, options.sharedTransaction ?? false);
  }

  private unary<Req, Res>(scope: Scope, handler: Handler<Req, Res>, sharesTransaction: boolean) {
    const terminal = async (call: Call): Promise<Outcome> => ({
      replayed: false,
      response: await handler(call.request as Req, { principal: call.principal!, requestId: call.requestId, run: call.run! }),
    });
    return (grpcCall: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const path = grpcCall.getPath();
      const method = this.methods.get(path);
      const requestId = requestIdOf(grpcCall.metadata);
      const trailer = new Metadata();
      trailer.set('x-request-id', requestId);
      const fail = (err: unknown) => callback(toServiceError(toCallerError(err), trailer));
      if (!method) return fail(new Error(`${path} was not registered through Rpc.addService`));
      const call: Call = {
        path,
        method,
        scope,
        request: grpcCall.request,
        metadata: grpcCall.metadata,
        requestId,
        gone: () => grpcCall.cancelled || Number(grpcCall.getDeadline()) <= Date.now(),
        sharesTransaction,
      };
      this.pipeline(call, terminal).then((outcome) => {
        if (outcome.replayed) {
          const header = new Metadata();
          header.set(REPLAYED_HEADER, 'true');
          grpcCall.sendMetadata(header);
        }
        if ('response' in outcome) callback(null, outcome.response as Res, trailer);
        else callback(toServiceError(outcome.error, trailer));
      }, fail);
    };
  }
}

function requestIdOf(metadata: Metadata): string {
  const given = metadata.get('x-request-id')[0];
  return typeof given === 'string' && /^[\x21-\x7e]{1,100}$/.test(given) ? given : randomUUID();
}
