import { status, type Metadata } from '@grpc/grpc-js';
import { DomainError, ErrorReason, type FieldViolation } from '../common/domain-error';
import type { WorkRunner } from '../db/unit-of-work';
import { isDatabaseUnavailable } from '../db/db-errors';
import type { Idempotency } from '../idempotency/idempotency';
import type { Logger } from '../logger';
import { CallFigures, type Metrics } from '../observability/metrics';
import { inServerSpan } from '../observability/trace-context';
import type { Authenticator } from '../tenants/authenticator';
import { fromStoredError, toCallerError } from './error-status';
import { MalformedRequest, type Middleware, type Outcome } from './pipeline';
import { parseApiKey } from '../tenants/api-key.secret';

/*
 * The call pipeline, outermost first (see Rpc): [traceCalls →
 * recordCallMetrics →, when on] logCalls → answerErrors →
 * drain → authenticate → requireScope → refuseGoneCalls → refuseMalformed →
 * exactlyOnce → the handler. Each is a small function of (call, next),
 * tested alone in test/grpc/middleware.unit.test.ts.
 */

/** One log line per call: method, code, reason, duration, tenant, key name, request id; unexpected errors with their details, and the database's error (a warning) when it was unavailable. */
export function logCalls(logger: Logger): Middleware {
  return async (call, next) => {
    const started = process.hrtime.bigint();
    const outcome = await next(call);
    const line = {
      method: call.path,
      code: status['error' in outcome ? outcome.error.code : status.OK],
      reason: 'error' in outcome ? outcome.error.reason : undefined,
      duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
      tenant: call.principal?.tenantSlug,
      key: call.principal?.keyName,
      request_id: call.requestId,
    };
    if ('error' in outcome && outcome.cause !== undefined) logger.error(Object.assign({}, line, { err: outcome.cause }), 'call failed');
    // Why: a read-only server, a full disk, refused connections look alike to the caller.
    else if ('error' in outcome && outcome.unavailable !== undefined) logger.warn(Object.assign({}, line, { err: outcome.unavailable }), 'call');
    else logger.info(line, 'call');
    return outcome;
  };
}

/**
 * Turns anything thrown further in into the error the caller may see (never
 * SQL, stack or driver text); an unexpected one keeps its cause for the log.
 */
export function answerErrors(): Middleware {
  return async (call, next) => {
    try {
      return await next(call);
    } catch (err) {
      const error = toCallerError(err);
      if (!error.expected) return { replayed: false, error, cause: err };
      return error.reason === ErrorReason.DatabaseUnavailable ? { replayed: false, error, unavailable: err } : { replayed: false, error };
    }
  };
}

/**
 * Counts calls in flight so that shutdown can wait for them; once shutdown
 * began (`stopping` aborts), new calls get UNAVAILABLE (SHUTTING_DOWN), and
 * so do server streams still open: they would never end by themselves.
 */
export function drain(state: { accepting(): boolean; enter(): void; leave(): void; stopping: AbortSignal }): Middleware {
  const shuttingDown = (what: string) => new DomainError(ErrorReason.ShuttingDown, `The server is shutting down; ${what} on another replica.`);
  const streams = new Set<AbortController>();
  state.stopping.addEventListener('abort', () => {
    for (const ending of streams) ending.abort(shuttingDown('resume from the last cursor'));
  });
  return async (call, next) => {
    if (!state.accepting()) throw shuttingDown('retry');
    if (call.ending) streams.add(call.ending);
    state.enter();
    try {
      return await next(call);
    } catch (err) {
      // The shutdown ended its database work (its transaction rolled back).
      if (!state.accepting() && isDatabaseUnavailable(err)) throw shuttingDown('nothing was written; retry');
      throw err;
    } finally {
      if (call.ending) streams.delete(call.ending);
      state.leave();
    }
  };
}

/**
 * Resolves `authorization: Bearer <api key>` to the caller's principal. A
 * stream ends with UNAUTHENTICATED (API_KEY_INVALID) when its key is
 * revoked while it is open (Authenticator.watch).
 */
export function authenticate(authenticator: Pick<Authenticator, 'authenticate' | 'watch'>): Middleware {
  return async (call, next) => {
    const header = call.metadata.get('authorization')[0];
    if (typeof header !== 'string' || header === '') {
      throw new DomainError(ErrorReason.ApiKeyMissing, 'Missing API key: send metadata "authorization: Bearer <api key>".');
    }
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new DomainError(ErrorReason.ApiKeyMissing, 'Malformed authorization metadata: expected "Bearer <api key>".');
    const { ending } = call;
    // A stream watches its key from before the lookup: a revocation heard
    // while the key is being looked up ends it too (review: one heard then,
    // before the watch, left the stream open for good).
    const keyId = ending ? parseApiKey(match[1]!)?.keyId : undefined;
    const unwatch =
      ending && keyId !== undefined
        ? authenticator.watch(keyId, () => ending.abort(new DomainError(ErrorReason.ApiKeyInvalid, 'The API key was revoked: the stream ended. Call again with a valid key.')))
        : undefined;
    try {
      const principal = await authenticator.authenticate(match[1]!);
      if (!principal) throw new DomainError(ErrorReason.ApiKeyInvalid, 'The API key is unknown or has been revoked.');
      call.principal = principal;
      if (ending?.signal.aborted) throw ending.signal.reason;
      return await next(call);
    } finally {
      unwatch?.();
    }
  };
}

/** The method's scope (read or write) must be one of the key's. */
export function requireScope(): Middleware {
  return (call, next) => {
    const principal = call.principal!;
    if (!principal.scopes.has(call.scope)) {
      throw new DomainError(ErrorReason.ScopeMissing, `The API key "${principal.keyName}" lacks the "${call.scope}" scope this method needs.`, [], {
        scope: call.scope,
      });
    }
    return next(call);
  };
}

/** Honours the caller's deadline: work it can no longer receive is not started. */
export function refuseGoneCalls(): Middleware {
  return (call, next) => {
    if (call.gone()) {
      throw new DomainError(ErrorReason.DeadlineExceeded, 'The call was cancelled or passed its deadline before it started; nothing was done.');
    }
    return next(call);
  };
}

/**
 * A request whose bytes did not decode is answered INVALID_ARGUMENT after
 * authentication, like any bad input (grpc-js itself would answer INTERNAL
 * without details); so is one with a map key decoding drops (`__proto__`).
 */
export function refuseMalformed(): Middleware {
  return (call, next) => {
    if (call.request instanceof MalformedRequest) {
      const { problem } = call.request;
      if (problem !== undefined) {
        const where = problem.field === '' ? '' : `${problem.field}: `;
        throw new DomainError(ErrorReason.ValidationFailed, `Invalid request: ${where}${problem.description}; ${problem.hint}.`, [
          { field: problem.field, description: problem.description },
        ]);
      }
      const message = `${call.path.slice(call.path.lastIndexOf('/') + 1)}Request`;
      throw new DomainError(ErrorReason.ValidationFailed, `Invalid request: the bytes sent are not a valid ${message} protobuf message.`, [
        { field: '', description: `is not a valid ${message} protobuf message` },
      ]);
    }
    return next(call);
  };
}

export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const REPLAYED_HEADER = 'idempotent-replayed';

// No space at either end: HTTP/2 drops such a value before it gets here
// (RFC 9113 8.2.1), so no caller can count on one; the rule says so.
const KEY_FORMAT = /^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$/;

/** The caller's idempotency key, validated; undefined when none was sent. */
export function idempotencyKeyOf(metadata: Metadata): string | undefined {
  const values = metadata.get(IDEMPOTENCY_KEY_HEADER);
  if (values.length === 0) return undefined;
  const key = values[0];
  const bad = (description: string): never => {
    const violation: FieldViolation = { field: IDEMPOTENCY_KEY_HEADER, description };
    throw new DomainError(ErrorReason.ValidationFailed, `Invalid request: metadata ${IDEMPOTENCY_KEY_HEADER} ${description}.`, [violation]);
  };
  if (values.length > 1) bad('must be sent once');
  if (typeof key !== 'string' || !KEY_FORMAT.test(key)) bad('must be 1 to 255 printable ASCII characters, with no space at either end');
  return key as string;
}

/** A request asking only "what would happen" (AIP-163 `validate_only`): it writes nothing, an idempotency record included. */
function isValidateOnly(request: unknown): boolean {
  return typeof request === 'object' && request !== null && (request as { validateOnly?: unknown }).validateOnly === true;
}

/**
 * Gives the handler its WorkRunner: a write with an `idempotency-key` runs
 * exactly once per key (its work in the transaction that stores its
 * outcome; a replay answers the stored outcome); anything else runs plain,
 * and so does a validate_only request, which writes nothing to replay (its
 * key is checked, then ignored).
 */
export function exactlyOnce(idempotency: Idempotency, plain: WorkRunner): Middleware {
  return async (call, next) => {
    const key = call.scope === 'write' ? idempotencyKeyOf(call.metadata) : undefined;
    // Set on the call, as authentication sets its principal: `{ ...call, run }`
    // cost ~2 µs a call on Node 20 (a spread followed by a property it lacks).
    if (key === undefined || isValidateOnly(call.request)) {
      call.run = plain;
      return next(call);
    }
    const outcome = await idempotency.execute(
      { tenantId: call.principal!.tenantId, key, definition: call.method, request: call.request },
      async (run) => {
        // What follows throws its errors (answerErrors, which turns them into answers, is further out).
        call.run = run;
        const inner = await next(call);
        if (!('response' in inner)) throw new Error('middleware after exactlyOnce must throw errors, not answer them');
        return inner.response;
      },
      { shared: call.sharesTransaction },
    );
    return 'response' in outcome ? outcome : { replayed: outcome.replayed, error: fromStoredError(outcome.error) };
  };
}

/** The status code an outcome answers. */
function codeOfOutcome(outcome: Outcome): status {
  return 'error' in outcome ? outcome.error.code : status.OK;
}

/**
 * Prometheus figures of every call, go-grpc-prometheus style: started,
 * handled by code, handling time, messages in and out, and idempotent
 * replays. Outside answerErrors, so it counts what the caller is answered.
 */
export function recordCallMetrics(metrics: Metrics): Middleware {
  return async (call, next) => {
    // A server stream is counted as go-grpc-prometheus counts one: its own grpc_type, every message sent.
    const stream = call.ending !== undefined;
    const m = metrics.method(call.path, stream ? 'server_stream' : 'unary');
    const figures = new CallFigures(m);
    figures.received();
    if (stream) call.sent = (messages) => figures.sent(messages);
    const outcome = await next(call);
    figures.handled(codeOfOutcome(outcome));
    if ('response' in outcome && !stream) figures.sent();
    if (outcome.replayed) m.replayed.inc();
    return outcome;
  };
}

/**
 * One server span per call, continuing the caller's trace from its
 * `traceparent` metadata; everything further in (log lines, group commits,
 * database statements) runs in its context. Outermost, so that the call's
 * log line carries its trace_id and span_id.
 */
export function traceCalls(): Middleware {
  // Only the semantic conventions' attributes: each one is serialized for every call (the call's log line links request_id and trace_id).
  return (call, next) => inServerSpan(call.path, call.metadata, () => next(call), codeOfOutcome);
}
