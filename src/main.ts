import { listenProblem } from './common/address-probe';
import type { Config } from './config';
import { oneLine, StartupError } from './common/startup-error';
import { openDatabase } from './db/database';
import { cannotListenOnAddress, startGrpcServer } from './grpc/server';
import { createLogger } from './logger';
import { Metrics } from './observability/metrics';
import { startMetricsServer, type MetricsServer } from './observability/metrics-server';
import type { Tracing } from './observability/tracing';
import { createApiKey, createTenant } from './tenants/tenants.service';
import { TenantEntity } from './tenants/tenant.entity';

/**
 * `credits serve`: tracing (when configured), database, migrations, gRPC
 * server, metrics endpoint, and a drain on SIGTERM/SIGINT. Resolves when the
 * server has shut down.
 */
export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel, { traceContext: config.tracing !== undefined });
  // The SDK is loaded only when tracing is on; it starts before the database so the pool's connections trace statements.
  const tracing: Tracing | undefined = config.tracing ? (require('./observability/tracing') as typeof import('./observability/tracing')).startTracing(config.tracing) : undefined;
  const metrics = config.metricsAddress === undefined ? undefined : new Metrics();
  // Taken addresses are told before the database is opened (an embedded one
  // starts, a new one is migrated: seconds), not after; the binds below
  // still say so when one is taken meanwhile.
  const addressTaken = await listenProblem(config.address);
  const metricsTaken = config.metricsAddress === undefined ? undefined : await listenProblem(config.metricsAddress);
  if (addressTaken || metricsTaken) {
    await tracing?.shutdown();
    throw addressTaken ? cannotListenOnAddress(config.address, addressTaken) : cannotListenOnMetricsAddress(config.metricsAddress!, metricsTaken);
  }
  const database = await openDatabase(config, { log: (msg) => logger.info(msg), traceStatements: tracing !== undefined }).catch(async (err: unknown) => {
    await tracing?.shutdown();
    throw err;
  });
  let server;
  let metricsServer: MetricsServer | undefined;
  try {
    if (database.embedded) await bootstrapDefaultTenant(database.dataSource);
    server = await startGrpcServer(
      { dataSource: database.dataSource, logger, metrics, tracing: tracing !== undefined },
      {
        address: config.address,
        tls: config.tls,
        idempotencyRetentionHours: config.idempotencyRetentionHours,
        authCacheMs: config.authCacheMs,
        expirySweepSeconds: config.expirySweepSeconds,
        sessionDatabaseUrl: config.sessionDatabaseUrl,
        eventRetentionHours: config.eventRetentionHours,
        eventCursorVersion: config.eventCursorVersion,
      },
    );
    if (metrics) {
      metricsServer = await startMetricsServer(metrics.registry, config.metricsAddress!).catch((err: unknown) => {
        throw cannotListenOnMetricsAddress(config.metricsAddress!, err);
      });
    }
  } catch (err) {
    await server?.shutdown(0);
    await database.close();
    await tracing?.shutdown();
    throw err;
  }
  logger.info(
    { port: server.port, address: config.address, embedded_database: database.embedded, tls: config.tls !== undefined, metrics_port: metricsServer?.port, tracing: tracing !== undefined },
    'credits serving',
  );
  if (config.eventsOff) logger.warn('CREDITS_EVENTS=off (a benchmark switch): changes write no events, and event readers will never see them');
  if (config.redemptionEventSnapshots) {
    logger.info('CREDITS_REDEMPTION_EVENT_SNAPSHOTS=on: REDEMPTION_CREATED events store their payload, for replicas of earlier versions; set it off once none is left');
  }

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'draining calls in flight');
      void server
        .shutdown(config.shutdownGraceMs)
        .then(() => metricsServer?.close())
        .then(() => database.close())
        .then(() => tracing?.shutdown())
        .then(() => {
          logger.info('stopped');
          logger.flush();
        })
        .catch((err: unknown) => logger.error({ err }, 'error while stopping'))
        .finally(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/**
 * On the first start of an empty embedded database, make a `default` tenant
 * and one read+write key so a newcomer can call the service at once. Never on
 * a database given by DATABASE_URL.
 */
async function bootstrapDefaultTenant(dataSource: import('typeorm').DataSource): Promise<void> {
  if ((await dataSource.getRepository(TenantEntity).count()) > 0) return;
  await createTenant(dataSource, { slug: 'default', currency: 'USD', multiCurrency: true });
  const { secret } = await createApiKey(dataSource, { tenantSlug: 'default', name: 'default', scopes: ['read', 'write'] });
  process.stdout.write(
    [
      '',
      'First start of the embedded database: created tenant "default" (USD, multi-currency)',
      'and a read+write API key named "default". It is shown only this once:',
      '',
      `    ${secret}`,
      '',
      'Call the service with metadata "authorization: Bearer <key>" (see README.md).',
      '',
    ].join('\n') + '\n',
  );
}

/** The error of a CREDITS_METRICS_ADDRESS the server cannot listen on. */
function cannotListenOnMetricsAddress(address: string, err: unknown): StartupError {
  return new StartupError(
    `Could not listen on CREDITS_METRICS_ADDRESS ${address} (${oneLine(err)}): stop what listens there, or set CREDITS_METRICS_ADDRESS to a free host:port or to off.`,
  );
}
