import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DataSource } from 'typeorm';
import { createDataSource, runMigrations } from '../../src/db/data-source';
import { embeddedHome, startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded-postgres';
import { freePort } from './child-server';

/** An embedded PostgreSQL of a suite's own, for tests that stop it under a running server. */
export interface OwnDatabase {
  /** A migrated data source on it. */
  dataSource: DataSource;
  /** Stops PostgreSQL (the data source stays, failing until start()). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Destroys the data source, stops PostgreSQL and removes its files. */
  close(): Promise<void>;
}

export async function openOwnDatabase(name: string, pool: { poolSize: number; connectTimeoutMs: number }): Promise<OwnDatabase> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `credits-${name}-`));
  const port = await freePort();
  let db: EmbeddedDatabase | undefined = await startEmbeddedPostgres(dataDir, () => {}, { port });
  const dataSource = createDataSource({ url: db.url, ...pool });
  await dataSource.initialize();
  await runMigrations(dataSource);
  return {
    dataSource,
    stop: async () => {
      await db?.stop();
      db = undefined;
    },
    start: async () => {
      db = await startEmbeddedPostgres(dataDir, () => {}, { port });
    },
    close: async () => {
      if (dataSource.isInitialized) await dataSource.destroy();
      await db?.stop();
      fs.rmSync(embeddedHome(dataDir), { recursive: true, force: true }); // as root, the cluster is not under dataDir
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
