import { randomUUID } from 'node:crypto';
import {
  Metadata,
  status,
  type MethodDefinition,
  type sendUnaryData,
  type Server,
  type ServerUnaryCall,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { DataSource } from 'typeorm';
import { DomainError, ErrorReason } from '../common/domain-error';
import { plainRunner, type WorkRunner } from '../db/unit-of-work';
import type { Logger } from '../logger';
import type { Scope } from '../tenants/api-key.entity';
import type { Authenticator } from '../tenants/authenticator';
import type { Principal } from '../tenants/principal';
import { toCallerError, toServiceError, type CallerError } from './error-status';
import { idempotencyKeyOf, REPLAYED_HEADER, type Idempotency } from './idempotency';

/** What a handler knows about the call besides its request. */
export interface CallContext {
  principal: Principal;
  requestId: string;
  /** Runs the use case's database work (see WorkRunner). */
  run: WorkRunner;
}

export type Handler<Req, Res> = (request: Req, context: CallContext) => Promise<Res>;

/** State shared by every call of one server. */
export interface RpcDeps {
  dataSource: DataSource;
  logger: Logger;
  /** False once shutdown began: new calls get UNAVAILABLE. */
  accepting: () => boolean;
  /** Counts calls in flight so shutdown can wait for them. */
  inFlight: { enter(): void; leave(): void };
  idempotency: Idempotency;
  authenticator: Authenticator;
}

/**
 * Turns an async handler into a grpc-js unary handler: authenticates the API
 * key, checks the scope, runs the handler, maps any error to a status with
 * google.rpc details (unknown errors become INTERNAL and are logged with
 * their details), and logs one line per call.
 */
export class Rpc {
  private readonly methods = new Map<string, MethodDefinition<unknown, unknown>>();
  private readonly plain: WorkRunner;

  constructor(private readonly deps: RpcDeps) {
    this.plain = plainRunner(deps.dataSource);
  }

  /**
   * Registers a service; its method definitions serve idempotent replays (they
   * encode responses). A request that is not a decodable protobuf message
   * reaches the handler as a MalformedRequest, to be answered INVALID_ARGUMENT
   * after authentication like any bad input (grpc-js itself would answer
   * INTERNAL without details).
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
    return this.unary('read', handler);
  }

  /**
   * `sharedTransaction`: with an idempotency key, the call may share its
   * transaction with other such calls (see Idempotency.execute for what the
   * handler must promise).
   */
  write<Req, Res>(handler: Handler<Req, Res>, options: { sharedTransaction?: boolean } = {}) {
    return this.unary('write', handler, options.sharedTransaction ?? false);
  }

  private unary<Req, Res>(scope: Scope, handler: Handler<Req, Res>, sharedTransaction = false) {
    const deps = this.deps;
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const started = process.hrtime.bigint();
      const method = call.getPath();
      const requestId = requestIdOf(call.metadata);
      let principal: Principal | undefined;
      deps.inFlight.enter();
      const finish = (code: status, reason: string | undefined, err?: unknown) => {
        deps.inFlight.leave();
        const line = {
          method,
          code: status[code],
          reason,
          duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
          tenant: principal?.tenantSlug,
          key: principal?.keyName,
          request_id: requestId,
        };
        if (err !== undefined) deps.logger.error({ ...line, err }, 'call failed');
        else deps.logger.info(line, 'call');
      };
      (async (): Promise<{ response: Res; replayed: boolean } | { error: CallerError; replayed: boolean }> => {
        if (!deps.accepting()) throw new DomainError(ErrorReason.ShuttingDown, 'The server is shutting down; retry on another replica.');
        principal = await authenticateCall(deps.authenticator, call.metadata);
        const caller = principal;
        if (!caller.scopes.has(scope)) {
          throw new DomainError(ErrorReason.ScopeMissing, `The API key "${caller.keyName}" lacks the "${scope}" scope this method needs.`, [], {
            scope,
          });
        }
        // Honour the caller's deadline: work it can no longer receive is not started.
        if (call.cancelled || Number(call.getDeadline()) <= Date.now()) {
          throw new DomainError(ErrorReason.DeadlineExceeded, 'The call was cancelled or passed its deadline before it started; nothing was done.');
        }
        if (call.request instanceof MalformedRequest) throw call.request.error();
        const key = scope === 'write' ? idempotencyKeyOf(call.metadata) : undefined;
        if (key === undefined) {
          return { response: await handler(call.request, { principal: caller, requestId, run: this.plain }), replayed: false };
        }
        const definition = this.methods.get(method) as MethodDefinition<Req, Res> | undefined;
        if (!definition) throw new Error(`${method} was not registered through Rpc.addService`);
        return deps.idempotency.execute(
          { tenantId: caller.tenantId, key, definition, request: call.request },
          (run) => handler(call.request, { principal: caller, requestId, run }),
          { shared: sharedTransaction },
        );
      })().then(
        (outcome) => {
          const trailer = new Metadata();
          trailer.set('x-request-id', requestId);
          if (outcome.replayed) {
            const header = new Metadata();
            header.set(REPLAYED_HEADER, 'true');
            call.sendMetadata(header);
          }
          if ('response' in outcome) {
            finish(status.OK, undefined);
            callback(null, outcome.response, trailer);
          } else {
            finish(outcome.error.code, outcome.error.reason);
            callback(toServiceError(outcome.error, trailer));
          }
        },
        (err: unknown) => {
          const error = toCallerError(err);
          finish(error.code, error.reason, error.expected ? undefined : err);
          const trailer = new Metadata();
          trailer.set('x-request-id', requestId);
          callback(toServiceError(error, trailer));
        },
      );
    };
  }
}

/** Stands in for a request whose bytes are not a valid protobuf encoding of the method's request message. */
class MalformedRequest {
  constructor(private readonly path: string) {}

  error(): DomainError {
    const message = `${this.path.slice(this.path.lastIndexOf('/') + 1)}Request`;
    return new DomainError(ErrorReason.ValidationFailed, `Invalid request: the bytes sent are not a valid ${message} protobuf message.`, [
      { field: '', description: `is not a valid ${message} protobuf message` },
    ]);
  }
}

async function authenticateCall(authenticator: Authenticator, metadata: Metadata): Promise<Principal> {
  const header = metadata.get('authorization')[0];
  if (typeof header !== 'string' || header === '') {
    throw new DomainError(ErrorReason.ApiKeyMissing, 'Missing API key: send metadata "authorization: Bearer <api key>".');
  }
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) throw new DomainError(ErrorReason.ApiKeyMissing, 'Malformed authorization metadata: expected "Bearer <api key>".');
  const principal = await authenticator.authenticate(match[1]!);
  if (!principal) throw new DomainError(ErrorReason.ApiKeyInvalid, 'The API key is unknown or has been revoked.');
  return principal;
}

function requestIdOf(metadata: Metadata): string {
  const given = metadata.get('x-request-id')[0];
  return typeof given === 'string' && /^[\x21-\x7e]{1,100}$/.test(given) ? given : randomUUID();
}
