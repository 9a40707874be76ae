import type { DataSource } from 'typeorm';
import type { Config } from '../config';
import { createDataSource, runMigrations } from './data-source';
import { startEmbeddedPostgres } from './embedded-postgres';

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
  options: { log?: (msg: string) => void; applicationName?: string; poolSize?: number } = {},
): Promise<Database> {
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgres(config.dataDir, options.log) : undefined;
  const url = config.databaseUrl ?? embedded!.url;
  const dataSource = createDataSource({
    url,
    poolSize: options.poolSize ?? config.dbPoolSize,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    applicationName: options.applicationName,
    eventsOff: config.eventsOff,
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
