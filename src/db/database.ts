import pg from 'pg';
import type { DataSource } from 'typeorm';
import type { Config } from '../config';
import { oneLine, StartupError } from '../common/startup-error';
import { createDataSource, runMigrations } from './data-source';
import { startEmbeddedPostgres } from './embedded-postgres';
import { tracedPgClient } from '../observability/trace-context';

/** The database the process works on, and how to let go of it. */
export interface Database {
  dataSource: DataSource;
  /** True when it is the embedded PostgreSQL rather than DATABASE_URL. */
  embedded: boolean;
  close(): Promise<void>;
}

/**
 * Connects to DATABASE_URL, or to the embedded PostgreSQL (starting it when no
 * other process has), and applies pending migrations.
 */
export async function openDatabase(
  config: Config,
  /**
   * `traceStatements`: each statement of a traced call is a span (tracing is
   * on). `noStatementTimeout`: statements run as long as they take, not
   * CREDITS_DB_STATEMENT_TIMEOUT_MS (`credits verify`: one snapshot, no row a call needs locked).
   */
  options: { log?: (msg: string) => void; applicationName?: string; poolSize?: number; traceStatements?: boolean; noStatementTimeout?: boolean } = {},
): Promise<Database> {
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgres(config.dataDir, options.log) : undefined;
  const url = config.databaseUrl ?? embedded!.url;
  const dataSource = createDataSource({
    url,
    poolSize: options.poolSize ?? config.dbPoolSize,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    noStatementTimeout: options.noStatementTimeout,
    applicationName: options.applicationName,
    pgClient: options.traceStatements ? tracedPgClient(pg.Client, new URL(url).pathname.slice(1) || undefined) : undefined,
    eventsOff: config.eventsOff,
    redemptionEventSnapshots: config.redemptionEventSnapshots,
  });
  try {
    await dataSource.initialize().catch((err: unknown) => {
      throw new StartupError(
        `Could not open the database ${embedded ? `embedded in ${embedded.clusterDir}` : `at ${whereIs(url)}`} (${oneLine(err)}): ${
          embedded ? 'see its postgres.log beside that folder' : 'start it, create it or fix DATABASE_URL'
        }.`,
      );
    });
    await migrate(url, config);
  } catch (err) {
    if (dataSource.isInitialized) await dataSource.destroy();
    await embedded?.release();
    throw err;
  }
  return {
    dataSource,
    embedded: embedded !== undefined,
    close: async () => {
      await dataSource.destroy();
      await embedded?.release();
    },
  };
}

/** A database URL without its password: host, port and database name. */
function whereIs(url: string): string {
  try {
    const parsed = new URL(url);
    const host = parsed.hostname || parsed.searchParams.get('host') || 'localhost';
    return `${host}:${parsed.port || '5432'}${parsed.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

/**
 * Applies pending migrations, under their session-level advisory lock, on
 * connections of their own: to CREDITS_SESSION_DATABASE_URL when set (behind
 * a transaction-mode pooler the lock and its unlock could land on two server
 * connections, and the lock stay held), else to the database itself. Without
 * the pool's 30 s statement timeout: a replica waits for the lock as long as
 * another one migrates, and a migration (an index built on a big table) takes
 * as long as it takes; both were canceled at 30 s. Two connections, whatever
 * CREDITS_DB_POOL_SIZE: runMigrations holds one for the lock while TypeORM's
 * migrations take another (with a pool of 1 the server could never start).
 */
async function migrate(url: string, config: Config): Promise<void> {
  const session = createDataSource({
    url: config.sessionDatabaseUrl ?? url,
    poolSize: 2,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    applicationName: 'credits-migrate',
    noStatementTimeout: true,
  });
  await session.initialize();
  try {
    await runMigrations(session);
  } finally {
    await session.destroy();
  }
}
