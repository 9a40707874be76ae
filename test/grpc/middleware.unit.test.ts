import { Writable } from 'node:stream';
import { Metadata, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { newApiKey } from '../../src/tenants/api-key.secret';
import pino from 'pino';
import { DomainError, ErrorReason } from '../../src/common/domain-error';
import type { WorkRunner } from '../../src/db/unit-of-work';
import type { Idempotency } from '../../src/idempotency/idempotency';
import {
  answerErrors,
  authenticate,
  drain,
  exactlyOnce,
  idempotencyKeyOf,
  logCalls,
  refuseGoneCalls,
  refuseMalformed,
  requireScope,
} from '../../src/grpc/middleware';
import { compose, MalformedRequest, type Call, type Middleware, type Next, type Outcome } from '../../src/grpc/pipeline';
import type { Principal } from '../../src/tenants/principal';

const PRINCIPAL: Principal = {
  tenantId: '00000000-0000-4000-8000-000000000001',
  tenantSlug: 'acme',
  defaultCurrency: 'USD',
  multiCurrency: false,
  keyName: 'billing',
  keyId: '00000000-0000-4000-8000-000000000001',
  scopes: new Set(['read']),
};

function callOf(overrides: Partial<Call> = {}, headers: Record<string, string> = {}): Call {
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
  return {
    path: '/credits.v1.PromotionalCreditService/GetCustomerBalance',
    method: { path: '/x', responseSerialize: () => Buffer.alloc(0), responseDeserialize: () => ({}) },
    scope: 'read',
    request: {},
    metadata,
    requestId: 'req-1',
    gone: () => false,
    sharesTransaction: false,
    ...overrides,
  };
}

const answer: Next = async () => ({ replayed: false, response: 'ok' });

/** Runs one middleware and answers what it threw, as answerErrors would tell the caller. */
async function reasonOf(middleware: Middleware, call: Call, next: Next = answer): Promise<string | undefined> {
  const outcome = await compose(answerErrors(), middleware)(call, next);
  return 'error' in outcome ? outcome.error.reason : undefined;
}

describe('call pipeline middleware (unit)', () => {
  it('compose runs middleware outermost first, and answers back through them in reverse', async () => {
    const seen: string[] = [];
    const step =
      (name: string): Middleware =>
      async (call, next) => {
        seen.push(`${name} in`);
        const outcome = await next(call);
        seen.push(`${name} out`);
        return outcome;
      };
    const outcome = await compose(step('a'), step('b'), step('c'))(callOf(), async () => {
      seen.push('handler');
      return { replayed: false, response: 42 };
    });
    expect(outcome).to.deep.equal({ replayed: false, response: 42 });
    expect(seen).to.deep.equal(['a in', 'b in', 'c in', 'handler', 'c out', 'b out', 'a out']);
  });

  it('compose: each call reaches its own next, whether that next was seen before or not, also with calls in flight together', async () => {
    const tagged: Middleware = async (call, next) => {
      const outcome = await next(call);
      return 'response' in outcome ? { replayed: false, response: `${call.requestId}:${String(outcome.response)}` } : outcome;
    };
    const pipeline = compose(tagged, tagged);
    const handler =
      (name: string): Next =>
      async () => {
        await new Promise((resolve) => setImmediate(resolve));
        return { replayed: false, response: name };
      };
    const first = handler('first');
    const second = handler('second');
    const outcomes = await Promise.all([
      pipeline(callOf({ requestId: 'a' }), first),
      pipeline(callOf({ requestId: 'b' }), second),
      pipeline(callOf({ requestId: 'c' }), first),
      pipeline(callOf({ requestId: 'd' }), handler('third')),
    ]);
    expect(outcomes.map((o) => ('response' in o ? o.response : o.error.code))).to.deep.equal(['a:a:first', 'b:b:second', 'c:c:first', 'd:d:third']);
  });

  /** A pino logger whose lines are parsed into `lines`. */
  const capturedLogger = () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    return { logger: pino({ level: 'info' }, sink), lines };
  };

  it('logCalls writes one line per call with method, code, reason, duration, tenant, key and request id; unexpected errors with their details', async () => {
    const { logger, lines } = capturedLogger();
    const call = callOf({ principal: PRINCIPAL });
    await logCalls(logger)(call, answer);
    const refused: Outcome = {
      replayed: false,
      error: { code: status.NOT_FOUND, reason: ErrorReason.CouponNotFound, message: 'x', violations: [], metadata: {}, expected: true },
    };
    await logCalls(logger)(call, async () => refused);
    await logCalls(logger)(call, async () => ({ ...refused, cause: new Error('boom') }));
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).to.have.length(3);
    expect(lines[0]).to.include({ msg: 'call', method: call.path, code: 'OK', tenant: 'acme', key: 'billing', request_id: 'req-1' });
    expect(lines[0]!.duration_ms).to.be.a('number');
    expect(lines[1]).to.include({ msg: 'call', code: 'NOT_FOUND', reason: 'COUPON_NOT_FOUND' });
    expect(lines[2]).to.include({ msg: 'call failed', level: 50 });
    expect((lines[2]!.err as { message: string }).message).to.equal('boom');
  });

  it('logCalls says why the database was unavailable, as a warning on the call line (answerErrors keeps that error)', async () => {
    const { logger, lines } = capturedLogger();
    const readOnly = Object.assign(new Error('cannot execute SELECT FOR UPDATE in a read-only transaction'), { code: '25006' });
    const outcome = await logCalls(logger)(callOf({ principal: PRINCIPAL }), (call) =>
      answerErrors()(call, async () => {
        throw readOnly;
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect('error' in outcome && [outcome.error.code, outcome.error.reason]).to.deep.equal([status.UNAVAILABLE, 'DATABASE_UNAVAILABLE']);
    expect(lines).to.have.length(1);
    expect(lines[0]).to.include({ msg: 'call', level: 40, code: 'UNAVAILABLE', reason: 'DATABASE_UNAVAILABLE' });
    expect(lines[0]!.err).to.deep.include({ code: '25006', message: readOnly.message });
  });

  it('answerErrors turns domain errors into their status and anything else into INTERNAL, keeping the cause for the log', async () => {
    const domain = await answerErrors()(callOf(), async () => {
      throw new DomainError(ErrorReason.InsufficientBalance, 'Not enough.', [], { balance: '1' });
    });
    expect(domain).to.deep.include({ replayed: false });
    expect('error' in domain && [domain.error.code, domain.error.reason, domain.error.metadata, 'cause' in domain]).to.deep.equal([
      status.FAILED_PRECONDITION,
      'INSUFFICIENT_BALANCE',
      { balance: '1' },
      false,
    ]);
    const bug = new TypeError('x is undefined');
    const internal = await answerErrors()(callOf(), async () => {
      throw bug;
    });
    expect('error' in internal && [internal.error.code, internal.error.message.includes('x is undefined'), internal.cause]).to.deep.equal([
      status.INTERNAL,
      false,
      bug,
    ]);
  });

  it('drain counts calls in flight (also the ones that fail) and refuses new calls once shutdown began', async () => {
    let accepting = true;
    let inFlight = 0;
    const state = { accepting: () => accepting, enter: () => void inFlight++, leave: () => void inFlight--, stopping: new AbortController().signal };
    let during = -1;
    await drain(state)(callOf(), async () => {
      during = inFlight;
      return { replayed: false, response: 1 };
    });
    expect([during, inFlight]).to.deep.equal([1, 0]);
    await reasonOf(drain(state), callOf(), async () => {
      throw new Error('fails');
    });
    expect(inFlight).to.equal(0);
    accepting = false;
    expect(await reasonOf(drain(state), callOf())).to.equal('SHUTTING_DOWN');
  });

  it('drain ends the server streams still open when shutdown begins (SHUTTING_DOWN), and leaves unary calls and finished streams alone', async () => {
    const stopping = new AbortController();
    const state = { accepting: () => !stopping.signal.aborted, enter: () => {}, leave: () => {}, stopping: stopping.signal };
    const open = callOf({ ending: new AbortController() });
    const finished = callOf({ ending: new AbortController() });
    await drain(state)(finished, answer);
    let release!: () => void;
    const running = drain(state)(open, () => new Promise((resolve) => (release = () => resolve({ replayed: false, response: undefined }))));
    await new Promise((r) => setImmediate(r));
    expect(open.ending!.signal.aborted, 'open before shutdown').to.equal(false);
    stopping.abort();
    expect(open.ending!.signal.aborted, 'open stream ended').to.equal(true);
    expect((open.ending!.signal.reason as DomainError).reason).to.equal(ErrorReason.ShuttingDown);
    expect(finished.ending!.signal.aborted, 'a stream that ended before is not touched').to.equal(false);
    release();
    await running;
  });

  it('authenticate resolves a Bearer key to the principal, and refuses a missing, malformed or unknown key', async () => {
    const authenticator = { authenticate: async (key: string) => (key === 'ck_good' ? PRINCIPAL : undefined), watch: () => () => undefined };
    let principal: Principal | undefined;
    const next: Next = async (call) => {
      principal = call.principal;
      return { replayed: false, response: 1 };
    };
    expect(await reasonOf(authenticate(authenticator), callOf({}, { authorization: 'Bearer ck_good' }), next)).to.equal(undefined);
    expect(principal).to.equal(PRINCIPAL);
    expect(await reasonOf(authenticate(authenticator), callOf({}, { authorization: 'bearer   ck_good' }), next)).to.equal(undefined);
    expect(await reasonOf(authenticate(authenticator), callOf())).to.equal('API_KEY_MISSING');
    expect(await reasonOf(authenticate(authenticator), callOf({}, { authorization: 'Basic abc' }))).to.equal('API_KEY_MISSING');
    expect(await reasonOf(authenticate(authenticator), callOf({}, { authorization: 'Bearer ck_bad' }))).to.equal('API_KEY_INVALID');
  });

  it('authenticate ends a stream whose key is revoked while it is being looked up, and stops watching when the call ends', async () => {
    const { apiKey, keyId } = newApiKey();
    const watchers = new Map<string, () => void>();
    let revokeDuringLookup = true;
    const authenticator = {
      authenticate: async () => {
        if (revokeDuringLookup) watchers.get(keyId)?.(); // the NOTIFY is heard while the key is read
        return PRINCIPAL;
      },
      watch: (id: string, revoked: () => void) => {
        watchers.set(id, revoked);
        return () => watchers.delete(id);
      },
    };
    let reached = false;
    const next: Next = async () => {
      reached = true;
      return { replayed: false, response: undefined };
    };
    const stream = () => callOf({ ending: new AbortController() }, { authorization: `Bearer ${apiKey}` });
    expect(await reasonOf(authenticate(authenticator), stream(), next)).to.equal('API_KEY_INVALID');
    expect(reached, 'the handler never started').to.equal(false);
    expect(watchers.size, 'no watcher left').to.equal(0);
    revokeDuringLookup = false;
    expect(await reasonOf(authenticate(authenticator), stream(), next)).to.equal(undefined);
    expect(reached).to.equal(true);
    expect(watchers.size, 'no watcher left once the stream ended').to.equal(0);
  });

  it('requireScope lets a key with the method scope through and refuses one without it', async () => {
    expect(await reasonOf(requireScope(), callOf({ principal: PRINCIPAL, scope: 'read' }))).to.equal(undefined);
    expect(await reasonOf(requireScope(), callOf({ principal: PRINCIPAL, scope: 'write' }))).to.equal('API_KEY_SCOPE_MISSING');
  });

  it('refuseGoneCalls does not start work the caller can no longer receive', async () => {
    expect(await reasonOf(refuseGoneCalls(), callOf())).to.equal(undefined);
    expect(await reasonOf(refuseGoneCalls(), callOf({ gone: () => true }))).to.equal('DEADLINE_EXCEEDED');
  });

  it('refuseMalformed answers VALIDATION_FAILED naming the request message', async () => {
    const outcome = await compose(answerErrors(), refuseMalformed())(callOf({ request: new MalformedRequest('/x') }), answer);
    expect('error' in outcome && [outcome.error.reason, outcome.error.message]).to.deep.equal([
      'VALIDATION_FAILED',
      'Invalid request: the bytes sent are not a valid GetCustomerBalanceRequest protobuf message.',
    ]);
  });

  it('idempotencyKeyOf accepts 1..255 printable ASCII characters, no space at either end (grpc-js refuses others itself), sent once', () => {
    const md = (...values: string[]) => {
      const m = new Metadata();
      for (const v of values) m.add('idempotency-key', v);
      return m;
    };
    expect(idempotencyKeyOf(new Metadata())).to.equal(undefined);
    expect(idempotencyKeyOf(md('order-7 retry'))).to.equal('order-7 retry');
    expect(idempotencyKeyOf(md('k'.repeat(255)))).to.equal('k'.repeat(255));
    expect(idempotencyKeyOf(md('k'))).to.equal('k');
    for (const bad of [md('k'.repeat(256)), md(''), md('a', 'b'), md(' k'), md('k ')]) {
      expect(() => idempotencyKeyOf(bad)).to.throw(DomainError).with.property('reason', 'VALIDATION_FAILED');
    }
  });

  it('exactlyOnce gives calls without a key (and reads) the plain runner, and never consults idempotency for them', async () => {
    const plain = { standalone: true } as WorkRunner;
    const idempotency = {
      execute: () => {
        throw new Error('must not be called');
      },
    } as unknown as Idempotency;
    const runs: Array<WorkRunner | undefined> = [];
    const next: Next = async (call) => {
      runs.push(call.run);
      return { replayed: false, response: 1 };
    };
    await exactlyOnce(idempotency, plain)(callOf({ scope: 'write', principal: PRINCIPAL }), next);
    await exactlyOnce(idempotency, plain)(callOf({ scope: 'read', principal: PRINCIPAL }, { 'idempotency-key': 'k1' }), next);
    expect(runs).to.deep.equal([plain, plain]);
  });
});
