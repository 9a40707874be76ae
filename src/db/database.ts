import pg from 'pg';
import type { DataSource } from 'typeorm';
import type { Config } from '../config';
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
  /** `traceStatements`: each statement of a traced call is a span (tracing is on). */
  options: { log?: (msg: string) => void; applicationName?: string; poolSize?: number; traceStatements?: boolean } = {},
): Promise<Database> {
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgres(config.dataDir, options.log) : undefined;
  const url = config.databaseUrl ?? embedded!.url;
  const dataSource = createDataSource({
    url,
    poolSize: options.poolSize ?? config.dbPoolSize,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    applicationName: options.applicationName,
    pgClient: options.traceStatements ? tracedPgClient(pg.Client, new URL(url).pathname.slice(1) || undefined) : undefined,
  });
  try {
    await dataSource.initialize();
    await runMigrations(dataSource);
  } catch (err) {
    if (dataSource.isInitialized) await dataSource.destroy();
    await embedded?.stop();
    throw err;
  }
  return {
    dataSource,
    embedded: embedded !== undefined,
    close: async () => {
      await dataSource.destroy();
      await embedded?.stop();
    },
  };
}
