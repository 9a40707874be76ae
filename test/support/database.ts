import path from 'node:path';
import type { DataSource } from 'typeorm';
import { createDataSource, runMigrations } from '../../src/db/data-source';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded-postgres';

/**
 * The database tests run against: DATABASE_URL when set, otherwise an
 * embedded PostgreSQL of its own for .data/test (never the dev database; as
 * root its cluster lives under /var/lib/credits, see embedded-postgres.ts).
 * Tests isolate themselves by creating a fresh tenant each, so one schema
 * serves the whole run.
 */
let embedded: EmbeddedDatabase | undefined;
let url: string | undefined;

export const TEST_DATA_DIR = path.join(__dirname, '..', '..', '..', '.data', 'test');

export async function testDatabaseUrl(): Promise<string> {
  if (url) return url;
  if (process.env.DATABASE_URL) {
    url = process.env.DATABASE_URL;
  } else {
    embedded = await startEmbeddedPostgres(TEST_DATA_DIR);
    url = embedded.url;
  }
  const dataSource = createDataSource({ url, poolSize: 2, connectTimeoutMs: 5000 });
  await dataSource.initialize();
  try {
    await runMigrations(dataSource);
  } finally {
    await dataSource.destroy();
  }
  return url;
}

export async function openTestDataSource(poolSize = 10): Promise<DataSource> {
  const dataSource = createDataSource({ url: await testDatabaseUrl(), poolSize, connectTimeoutMs: 5000, applicationName: 'credits-test' });
  await dataSource.initialize();
  return dataSource;
}

export async function stopTestDatabase(): Promise<void> {
  await embedded?.stop();
  embedded = undefined;
  url = undefined;
}

/**
 * Deadlocks PostgreSQL has detected in the database `dataSource` is on, so
 * far (pg_stat_database): a race test compares it before and after, since a
 * write retries its deadlocks unseen. A server's connection reports its own
 * within a second of going idle: wait that long before the second read.
 */
export async function deadlocksIn(dataSource: DataSource): Promise<number> {
  const [row] = (await dataSource.query(`SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`)) as Array<{ deadlocks: string }>;
  return Number(row!.deadlocks);
}
