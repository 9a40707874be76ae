import type { Metadata } from '@grpc/grpc-js';
import type { WorkRunner } from '../db/unit-of-work';
import type { IdempotentMethod } from '../idempotency/idempotency';
import type { Scope } from '../tenants/api-key.entity';
import type { Principal } from '../tenants/principal';
import type { CallerError } from './error-status';

/**
 * One call (unary, or server streaming) on its way through the pipeline.
 * The transport fills in what it read off the wire; middleware fill in what
 * they establish (`principal`, `run`) for those after them.
 */
export interface Call {
  /** '/credits.v1.Service/Method'. */
  readonly path: string;
  readonly method: IdempotentMethod<unknown>;
  /** The scope the method needs. */
  readonly scope: Scope;
  /** The decoded request, or a MalformedRequest when its bytes were not a valid message. */
  readonly request: unknown;
  readonly metadata: Metadata;
  /** The caller's x-request-id, or one made up. */
  readonly requestId: string;
  /** Whether the caller can no longer receive an answer (cancelled, or past its deadline). */
  gone(): boolean;
  /** With an idempotency key, the call may share its transaction with others (see Idempotency.execute). */
  readonly sharesTransaction: boolean;
  /** Set by authentication. */
  principal?: Principal;
  /** How the handler runs its database work; set by the idempotency middleware. */
  run?: WorkRunner;
  /**
   * Server streams only: aborted, with a DomainError as reason, when the
   * stream must end before its handler is done: the caller cancelled
   * (CANCELLED) or the server is shutting down (SHUTTING_DOWN, see drain).
   */
  readonly ending?: AbortController;
  /** Server streams only: counts the messages the stream sent (set by recordCallMetrics). */
  sent?: (messages: number) => void;
}

/**
 * What a call answers (a server stream: `response` undefined once it sent
 * everything); `cause` is the thrown error behind an unexpected (logged)
 * failure.
 */
export type Outcome = { replayed: boolean } & (
  | { response: unknown }
  /** cause: a bug's error, logged with the call; unavailable: why the database could not take the call, logged as a warning. */
  | { error: CallerError; cause?: unknown; unavailable?: unknown }
);

export type Next = (call: Call) => Promise<Outcome>;

/** One step of the pipeline: does its part, then hands the call to `next` (or answers itself). */
export type Middleware = (call: Call, next: Next) => Promise<Outcome>;

/**
 * Composes middleware, the first outermost (nice-grpc's composeServerMiddleware,
 * for one call shape). The chain down to a given `next` is made on its first
 * call and kept while that `next` lives: a unary method's terminal lives as
 * long as the server, so its calls no longer make a closure per step (a
 * stream's terminal is made per call, and so is its chain).
 */
export function compose(...middleware: Middleware[]): Middleware {
  const chains = new WeakMap<Next, Next>();
  return (call, next) => {
    let chain = chains.get(next);
    if (chain === undefined) {
      chain = middleware.reduceRight<Next>((inner, outer) => (c) => outer(c, inner), next);
      chains.set(next, chain);
    }
    return chain(call);
  };
}

/** What is wrong with a request's bytes: which field (proto field names; '' when it cannot be told), what, and what to send instead. */
export interface RequestProblem {
  field: string;
  description: string;
  hint: string;
}

/**
 * Stands in for a request whose bytes are not a valid protobuf encoding of
 * the method's request message, or that decoding would change without a
 * word (`problem`): a string that is not UTF-8 (message-decoding.ts), a map
 * key it drops (reserved-map-keys.ts), a Timestamp out of its type's range
 * (timestamp-checks.ts).
 */
export class MalformedRequest {
  constructor(
    readonly path: string,
    readonly problem?: RequestProblem,
  ) {}
}
