import fs from 'node:fs';
import path from 'node:path';
import type { DataSource } from 'typeorm';
import { createDataSource, runMigrations } from '../src/db/data-source';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres';
import { cpuSeconds } from './proc-stats';

/** The embedded cluster the benchmark owns (git-ignored). */
export const BENCH_DATA_DIR = path.join(__dirname, '..', '..', '.data', 'bench');

export interface BenchDatabase {
  url: string;
  embedded: boolean;
  /** A small pool for setup, recording and checks (not used while measuring). */
  dataSource: DataSource;
  /** PostgreSQL's postmaster when it runs on this machine (for its CPU); undefined otherwise. */
  postmasterPid: number | undefined;
  serverVersion: string;
  close(): Promise<void>;
}

/**
 * DATABASE_URL when set (nothing is dropped there: the benchmark adds a
 * tenant of its own), otherwise an embedded PostgreSQL in .data/bench whose
 * schema is dropped and migrated afresh, so every run starts from the same
 * empty tables.
 */
export async function openBenchDatabase(log: (msg: string) => void): Promise<BenchDatabase> {
  const given = process.env.DATABASE_URL || undefined;
  const embedded = given ? undefined : await startEmbeddedPostgres(BENCH_DATA_DIR, log);
  const url = given ?? embedded!.url;
  const dataSource = createDataSource({ url, poolSize: 4, connectTimeoutMs: 10_000, applicationName: 'credits-bench' });
  try {
    await dataSource.initialize();
    if (embedded) {
      log(`embedded PostgreSQL in ${path.relative(process.cwd(), BENCH_DATA_DIR) || BENCH_DATA_DIR}: dropping the previous run's schema`);
      await dataSource.query('DROP SCHEMA public CASCADE');
      await dataSource.query('CREATE SCHEMA public');
    }
    await runMigrations(dataSource);
    const [{ version }] = (await dataSource.query(`SELECT current_setting('server_version') AS version`)) as [{ version: string }];
    return {
      url,
      embedded: embedded !== undefined,
      dataSource,
      postmasterPid: await findPostmaster(dataSource),
      serverVersion: version,
      close: async () => {
        await dataSource.destroy();
        await embedded?.stop();
      },
    };
  } catch (err) {
    if (dataSource.isInitialized) await dataSource.destroy();
    await embedded?.stop();
    throw err;
  }
}

/** The parent of our own backend, when that backend is a process on this machine. */
async function findPostmaster(dataSource: DataSource): Promise<number | undefined> {
  const [{ pid }] = (await dataSource.query('SELECT pg_backend_pid() AS pid')) as [{ pid: number }];
  if (cpuSeconds(pid) === undefined) return undefined;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    // A backend in a container of its own would show an unrelated pid; check it is a postgres.
    const comm = fs.readFileSync(`/proc/${ppid}/comm`, 'utf8').trim();
    return /postgres|postmaster/.test(comm) ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/** Flushes dirty pages before a measured run so every run starts from the same state (needs superuser; skipped otherwise). */
export async function checkpoint(dataSource: DataSource): Promise<void> {
  await dataSource.query('CHECKPOINT').catch(() => undefined);
}
