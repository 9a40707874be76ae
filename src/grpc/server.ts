import fs from 'node:fs';
import { createSecureContext } from 'node:tls';
import http2 from 'node:http2';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { DataSource } from 'typeorm';
import { CouponServiceService } from '../../gen/credits/v1/coupon_service';
import { CreditServiceService } from '../../gen/credits/v1/credit_service';
import { EventServiceService } from '../../gen/credits/v1/event_service';
import { PromotionalCreditServiceService } from '../../gen/credits/v1/promotional_credit_service';
import { PageTokenCodec } from '../common/page-token';
import { runPeriodically, type Periodic } from '../common/periodic';
import { DEFAULT_AUTH_CACHE_MS, DEFAULT_EVENT_RETENTION_HOURS, DEFAULT_EXPIRY_SWEEP_SECONDS, DEFAULT_IDEMPOTENCY_RETENTION_HOURS, type Config } from '../config';
import { CouponsService } from '../coupons/coupons.service';
import { CreditsService } from '../credits/credits.service';
import type { Logger } from '../logger';
import { PromotionalCreditsService } from '../promotional-credits/promotional-credits.service';
import { couponHandlers } from './coupon.handler';
import { couponEventSnapshots } from './coupon.mapper';
import { creditHandlers } from './credit.handler';
import { eventHandlers } from './event.handler';
import { EventsService } from '../events/events.service';
import { promotionalCreditHandlers } from './promotional-credit.handler';
import { PlainRunner } from '../db/unit-of-work';
import { Idempotency } from '../idempotency/idempotency';
import { finalErrorOf } from './error-status';
import { answerErrors, authenticate, drain, exactlyOnce, logCalls, recordCallMetrics, refuseGoneCalls, refuseMalformed, requireScope, traceCalls } from './middleware';
import { compose, type Middleware } from './pipeline';
import { addReflection } from './reflection';
import { standardServiceMetrics } from './standard-service-metrics';
import { Rpc } from './rpc';
import { Authenticator } from '../tenants/authenticator';
import { connectionOf } from '../db/data-source';
import { ConnectionsInUse } from '../db/connections-in-use';
import { DatabaseClock } from '../db/database-clock';
import { oneLine, StartupError } from '../common/startup-error';
import type { Metrics } from '../observability/metrics';
import { observeService } from '../observability/service-metrics';
import { DatabaseReadiness } from '../observability/readiness';

export const SERVICE_NAMES = ['credits.v1.PromotionalCreditService', 'credits.v1.CouponService', 'credits.v1.CreditService', 'credits.v1.EventService'];

const PRUNE_INTERVAL_MS = 10 * 60 * 1000;

/** What runs instead of each periodic job without housekeeping: nothing. */
const NO_HOUSEKEEPING: Periodic = { stop: () => Promise.resolve() };

/** How often the database's clock is measured again (see DatabaseClock): a clock NTP keeps drifts well under a millisecond meanwhile, one it does not a few. */
const CLOCK_SYNC_INTERVAL_MS = 60 * 1000;

/** How long calls whose database work a shutdown ended get to answer before the connections close. */
const ANSWER_AFTER_TERMINATE_MS = 500;

/** Largest request or response message accepted, in bytes. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
/** The server's pings of each connection (see the Server's options). */
const SERVER_KEEPALIVE_MS = 60_000;
const SERVER_KEEPALIVE_TIMEOUT_MS = 20_000;

export interface GrpcServer {
  /** The port actually bound (useful with port 0). */
  port: number;
  /**
   * Marks the server NOT_SERVING, refuses new calls, waits up to `graceMs`
   * for calls in flight (and the sweeps), then ends the database work of
   * those still running (rolled back: they answer UNAVAILABLE) and closes
   * every connection.
   */
  shutdown(graceMs: number): Promise<void>;
}

export async function startGrpcServer(
  /** `metrics`: record them (see src/observability/metrics.ts); `tracing`: a span per call (the process has started tracing). */
  deps: { dataSource: DataSource; logger: Logger; metrics?: Metrics; tracing?: boolean },
  options: {
    address: string;
    tls?: Config['tls'];
    idempotencyRetentionHours?: number;
    authCacheMs?: number;
    expirySweepSeconds?: number;
    /** How often readiness checks the database (default 1 s). */
    readinessIntervalMs?: number;
    /** Where the revocation listener connects (LISTEN needs a session), when not to the data source's database (CREDITS_SESSION_DATABASE_URL). */
    sessionDatabaseUrl?: string;
    eventRetentionHours?: number;
    /** The event cursors handed out (CREDITS_EVENT_CURSOR_VERSION; default 1). */
    eventCursorVersion?: 1 | 2;
    /**
     * false: none of the periodic housekeeping runs (the expiry sweep,
     * pruning keys and events, measuring the database's clock after the
     * first time). For the bench's recording server, which takes every
     * statement of a pooled connection for the call's: a sweep that fell
     * inside a sample was replayed as part of the call (default true).
     */
    housekeeping?: boolean;
  },
): Promise<GrpcServer> {
  const { metrics } = deps;
  const housekeeping = options.housekeeping ?? true;
  const periodically: typeof runPeriodically = housekeeping ? runPeriodically : () => NO_HOUSEKEEPING;
  const idempotency = new Idempotency(deps.dataSource, options.idempotencyRetentionHours ?? DEFAULT_IDEMPOTENCY_RETENTION_HOURS, finalErrorOf, {
    name: 'keyed_calls',
    observeGroupSize: metrics?.groupCommit('keyed_calls'),
  });
  const pageTokens = new PageTokenCodec(await loadPageTokenKey(deps.dataSource));
  // Times shown and checked by the database's clock, as writes are judged.
  const clock = new DatabaseClock(deps.dataSource);
  const measureClock = clockMeasure(clock, deps.logger);
  await measureClock();
  metrics?.observeDatabaseClock(clock);
  const authenticator = new Authenticator(deps.dataSource, {
    cacheMs: options.authCacheMs ?? DEFAULT_AUTH_CACHE_MS,
    logger: deps.logger,
    onLookup: metrics?.authLookup,
    listenerConnection: options.sessionDatabaseUrl
      ? { connectionString: options.sessionDatabaseUrl, connectionTimeoutMillis: connectionOf(deps.dataSource).connectionTimeoutMillis }
      : undefined,
  });
  await authenticator.start();
  const events = await EventsService.start(deps.dataSource, deps.logger, {
    retentionHours: housekeeping ? (options.eventRetentionHours ?? DEFAULT_EVENT_RETENTION_HOURS) : undefined,
    cursorVersion: options.eventCursorVersion,
  });
  const connectionsInUse = new ConnectionsInUse(deps.dataSource);
  let accepting = true;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const stopping = new AbortController(); // ends the streams still open at shutdown
  // The call pipeline, outermost first (src/grpc/middleware.ts); tracing and
  // metrics only when on, so that off costs nothing per call.
  const observe: Middleware[] = [...(deps.tracing ? [traceCalls()] : []), ...(metrics ? [recordCallMetrics(metrics)] : [])];
  const rpc = new Rpc(
    compose(
      ...observe,
      logCalls(deps.logger),
      answerErrors(),
      drain({
        accepting: () => accepting,
        enter: () => void inFlight++,
        leave: () => {
          if (--inFlight === 0) drained?.();
        },
        stopping: stopping.signal,
      }),
      authenticate(authenticator),
      requireScope(),
      refuseGoneCalls(),
      refuseMalformed(),
      exactlyOnce(idempotency, new PlainRunner(deps.dataSource, { name: 'keyless_statements', observeGroupSize: metrics?.groupCommit('keyless_statements') })),
    ),
  );
  const clockSync = periodically(CLOCK_SYNC_INTERVAL_MS, measureClock, () => undefined);
  // Every replica prunes expired idempotency keys now and then; DELETEs of
  // disjoint or already-deleted rows are harmless when two do it at once.
  const keyPruning = periodically(
    PRUNE_INTERVAL_MS,
    async (signal) => {
      await idempotency.prune(undefined, signal);
    },
    (err) => deps.logger.warn({ err }, 'pruning idempotency keys failed'),
  );

  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': 4 * MAX_MESSAGE_BYTES,
    // channelz's per-call and per-session counters (on by default) are read
    // by nothing here (no channelz service is served): ~1.5 KB of garbage
    // and a timestamp per call.
    'grpc.enable_channelz': 0,
    // Pings every connection now and then and drops it when unanswered: a
    // client whose host died or whose path went silent otherwise kept its
    // streams open, and their subscriptions, until the kernel gave up
    // (hours). Clients' own pings (@credits/client: every 20 s while calls
    // are open) are answered whatever their rate: grpc-js sets no limit.
    'grpc.keepalive_time_ms': SERVER_KEEPALIVE_MS,
    'grpc.keepalive_timeout_ms': SERVER_KEEPALIVE_TIMEOUT_MS,
    // Health and reflection bypass the call pipeline, and with it recordCallMetrics.
    interceptors: metrics ? [standardServiceMetrics(metrics)] : [],
  });
  const promotionalCredits = new PromotionalCreditsService(deps.dataSource, pageTokens, clock.now, metrics && ((name) => metrics.groupCommit(name)));
  rpc.addService(server, PromotionalCreditServiceService, promotionalCreditHandlers(promotionalCredits, rpc));
  const coupons = new CouponsService(deps.dataSource, pageTokens, clock.now);
  const sweeper = startExpirySweep(
    periodically,
    {
      balances: (signal) => promotionalCredits.sweepExpired(undefined, signal),
      lapsedRedemptions: (signal) => coupons.recordLapsedHolds(couponEventSnapshots, { signal }),
    },
    (options.expirySweepSeconds ?? DEFAULT_EXPIRY_SWEEP_SECONDS) * 1000,
    deps.logger,
    metrics,
  );
  rpc.addService(server, CouponServiceService, couponHandlers(coupons, rpc));
  rpc.addService(server, CreditServiceService, creditHandlers(new CreditsService(deps.dataSource, pageTokens, clock.now), rpc));
  rpc.addService(server, EventServiceService, eventHandlers(events, rpc, metrics?.eventStreamLag(), clock.now));
  const health = new HealthImplementation({ '': 'SERVING', ...Object.fromEntries(SERVICE_NAMES.map((s) => [s, 'SERVING'])) });
  health.addToServer(server);
  // Readiness: every service NOT_SERVING while the database does not answer.
  const readiness = new DatabaseReadiness(
    connectionOf(deps.dataSource),
    (up) => {
      metrics?.databaseReachable(up);
      if (accepting) for (const name of ['', ...SERVICE_NAMES]) health.setStatus(name, up ? 'SERVING' : 'NOT_SERVING');
    },
    deps.logger,
    options.readinessIntervalMs,
  );
  if (metrics) observeService(metrics, deps.dataSource, () => connectionsInUse.size);
  addReflection(server, [...SERVICE_NAMES, 'grpc.health.v1.Health']);

  let port: number;
  try {
    const credentials = credentialsFor(options.tls);
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(options.address, credentials, (err, bound) =>
        err
          ? reject(cannotListenOnAddress(options.address, err))
          : resolve(bound),
      ),
    );
  } catch (err) {
    await clockSync.stop();
    await keyPruning.stop();
    await sweeper.stop();
    await events.close();
    await authenticator.close();
    throw err;
  }
  readiness.start();

  return {
    port,
    shutdown: async (graceMs) => {
      // Stay reachable while draining, so health checks see NOT_SERVING and
      // new calls get a clear UNAVAILABLE (SHUTTING_DOWN) instead of a reset.
      accepting = false;
      stopping.abort();
      for (const name of ['', ...SERVICE_NAMES]) health.setStatus(name, 'NOT_SERVING');
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<'over'>((resolve) => (timer = setTimeout(() => resolve('over'), graceMs)));
      // The background work ends within the grace like the calls: a sweep
      // waiting on a row lock must not hold the drain (or health) past it.
      const idle = inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (drained = resolve));
      const quiet = Promise.all([idle, sweeper.stop(), keyPruning.stop(), clockSync.stop(), events.stopPruning(), readiness.stop()]);
      if ((await Promise.race([quiet, graceOver])) === 'over') {
        deps.logger.warn({ in_flight: inFlight, connections_in_use: connectionsInUse.size }, 'shutdown grace period over; cutting calls still in flight');
        // Their database work first, so that it rolls back rather than
        // committing after the caller was cut off: they fail at once and
        // answer UNAVAILABLE (SHUTTING_DOWN) while the connection is still
        // there to carry it; then every connection is closed.
        const terminated = await connectionsInUse.terminate().catch((err: unknown) => {
          deps.logger.warn({ err }, 'could not end the database work of calls in flight');
          return 0;
        });
        // Then their answers go out: the last handler to finish leaves the
        // drain before grpc-js has sent its answer, so closing the connections
        // as soon as none is in flight dropped that one ("Connection dropped").
        // tryShutdown ends once every connection has sent its calls' answers.
        if (terminated > 0) {
          const answered = quiet.then(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
          await Promise.race([answered, new Promise((resolve) => setTimeout(resolve, ANSWER_AFTER_TERMINATE_MS))]);
        }
        destroySessions(server);
        server.forceShutdown();
      } else {
        // Handlers are done; let the last responses flush, within what is left of the grace.
        await new Promise<void>((resolve) => {
          server.tryShutdown(() => resolve());
          void graceOver.then(() => {
            destroySessions(server);
            server.forceShutdown();
            resolve();
          });
        });
      }
      clearTimeout(timer);
      await events.close();
      await authenticator.close();
    },
  };
}

/** The error of a CREDITS_ADDRESS the server cannot listen on (taken, not this host's, a privileged port). */
export function cannotListenOnAddress(address: string, err: unknown): StartupError {
  return new StartupError(`Could not listen on CREDITS_ADDRESS ${address} (${oneLine(err)}): stop what listens there or set CREDITS_ADDRESS to a free host:port.`);
}

/**
 * One measure of the database's clock (DatabaseClock.synchronize), as the
 * server takes them: at start, then every CLOCK_SYNC_INTERVAL_MS. Says so
 * when the offset is a tenth of a second or more away from what it last
 * said (a host whose clock is off, drifts or was set; 0 at start), and when
 * it could not measure (the last offset stays; readiness reports the
 * database itself).
 */
function clockMeasure(clock: DatabaseClock, logger: Logger): () => Promise<void> {
  let said = 0;
  return async () => {
    try {
      const offset = await clock.synchronize();
      if (Math.abs(offset - said) < 100) return;
      said = offset;
      if (offset === 0) logger.info({ offset_ms: 0 }, "the database's clock agrees with this server's again");
      else logger.warn({ offset_ms: offset }, `the database's clock is ${Math.abs(offset)} ms ${offset > 0 ? 'ahead of' : 'behind'} this server's; times are shown and checked by the database's`);
    } catch (err) {
      logger.warn({ err }, "could not measure the database's clock");
    }
  };
}

/** What one run of the expiry sweep does; each answers how many it settled or recorded, and stops early once `signal` aborts. */
interface ExpirySweeps {
  /** Balances with expirations due (lots and holds of promotional credits): promotional_credit_sweep. */
  balances(signal: AbortSignal): Promise<number>;
  /** Held redemptions past their hold_until: their cancellation and its event (CouponsService.recordLapsedHolds). */
  lapsedRedemptions(signal: AbortSignal): Promise<number>;
}

/**
 * Every replica sweeps expirations due now and then (promotional_credit_sweep
 * skips balances another replica is settling, and settles each from its lots
 * as they stand, so sweeps at once never expire a lot twice; lapsed holds of
 * redemptions are recorded under their coupons' locks, each once), on
 * runPeriodically's schedule. A run is `failed` when either part failed; the
 * other part still ran.
 */
function startExpirySweep(periodically: typeof runPeriodically, sweeps: ExpirySweeps, intervalMs: number, logger: Logger, metrics: Metrics | undefined): Periodic {
  const part = async (what: string, sweep: () => Promise<number>): Promise<number | undefined> => {
    try {
      return await sweep();
    } catch (err) {
      logger.warn({ err }, `expiry sweep failed (${what})`);
      return undefined;
    }
  };
  return periodically(
    intervalMs,
    async (signal) => {
      const settled = await part('balances', () => sweeps.balances(signal));
      const lapsedRedemptions = await part('lapsed redemptions', () => sweeps.lapsedRedemptions(signal));
      if (settled !== undefined && settled > 0) logger.info({ balances: settled }, 'expired credits and holds settled');
      if (lapsedRedemptions !== undefined && lapsedRedemptions > 0) logger.info({ redemptions: lapsedRedemptions }, 'lapsed redemption holds canceled');
      const failed = settled === undefined || lapsedRedemptions === undefined;
      metrics?.expirySweep({ failed, settled: settled ?? 0, lapsedRedemptions: lapsedRedemptions ?? 0 });
    },
    (err) => logger.warn({ err }, 'expiry sweep failed'),
  );
}

function credentialsFor(tls: Config['tls']): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  try {
    const ca = tls.clientCaFile ? fs.readFileSync(tls.clientCaFile) : null;
    const cert = fs.readFileSync(tls.certFile);
    const key = fs.readFileSync(tls.keyFile);
    // grpc-js reads them only when it binds, and says so as an address it could not add.
    createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
    return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], ca !== null);
  } catch (err) {
    const files = ['CREDITS_TLS_CERT', 'CREDITS_TLS_KEY', ...(tls.clientCaFile ? ['CREDITS_TLS_CLIENT_CA'] : [])].join(', ');
    throw new StartupError(`Could not use the TLS files ${files} (${oneLine(err)}): give readable PEM files (certificate chain, its private key${tls.clientCaFile ? ', client CA' : ''}).`);
  }
}

async function loadPageTokenKey(dataSource: DataSource): Promise<Buffer> {
  const rows: Array<{ value: Buffer }> = await dataSource.query(`SELECT value FROM service_secrets WHERE name = 'page_token'`);
  if (!rows[0]) throw new Error('service_secrets has no page_token key; run `credits migrate`');
  return rows[0].value;
}

/**
 * Closes every HTTP/2 connection of the server at once. grpc-js's
 * forceShutdown() destroys only the sessions channelz keeps, and channelz is
 * off here (grpc.enable_channelz 0): alone, it cut no call in flight, and an
 * open stream (a health Watch, a StreamEvents that had not ended) kept the
 * process alive after "stopped" (found in review). The sessions are read
 * from the server's own table, as grpc-js's drain() does.
 */
function destroySessions(server: Server): void {
  const servers = (server as unknown as { http2Servers?: Map<unknown, { sessions?: Set<http2.ServerHttp2Session> }> }).http2Servers;
  for (const entry of servers?.values() ?? []) {
    for (const session of entry.sessions ?? []) session.destroy(undefined, http2.constants.NGHTTP2_CANCEL);
  }
}
