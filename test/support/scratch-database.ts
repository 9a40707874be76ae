import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import type { DataSource } from 'typeorm';
import { createDataSource, runMigrations } from '../../src/db/data-source';
import { testDatabaseUrl } from './database';

/**
 * Runs `work` on a database of its own beside the test database (`CREATE
 * DATABASE <prefix>_<random> <options>`), given its URL and name, and drops
 * it after. Skips `test` when DATABASE_URL's role may not create databases.
 */
export async function withScratchDatabase(
  test: Mocha.Context,
  prefix: string,
  options: string,
  work: (url: string, name: string) => Promise<void>,
): Promise<void> {
  const url = await testDatabaseUrl();
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new Client({ connectionString: url });
  await admin.connect();
  try {
    try {
      await admin.query(`CREATE DATABASE ${name} ${options}`);
    } catch (err) {
      if ((err as { code?: string }).code === '42501') test.skip(); // no CREATEDB privilege on this DATABASE_URL
      throw err;
    }
    await work(Object.assign(new URL(url), { pathname: `/${name}` }).href, name);
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin.end();
  }
}

/**
 * withScratchDatabase with the schema migrated: `work` gets a data source on
 * it (destroyed after, so the database can be dropped). `prepare` runs on
 * the empty database first, over a connection of its own (e.g. settings its
 * sessions start with).
 */
export async function withMigratedScratchDatabase(
  test: Mocha.Context,
  prefix: string,
  work: (dataSource: DataSource, url: string) => Promise<void>,
  options: { poolSize?: number; prepare?: (admin: Client, name: string) => Promise<void> } = {},
): Promise<void> {
  await withScratchDatabase(test, prefix, '', async (url, name) => {
    if (options.prepare) {
      const admin = new Client({ connectionString: url });
      await admin.connect();
      try {
        await options.prepare(admin, name);
      } finally {
        await admin.end();
      }
    }
    const dataSource = createDataSource({ url, poolSize: options.poolSize ?? 2, connectTimeoutMs: 5_000 });
    await dataSource.initialize();
    try {
      await runMigrations(dataSource);
      await work(dataSource, url);
    } finally {
      await dataSource.destroy();
    }
  });
}
