import type { Client } from 'pg';
import type { DataSource } from 'typeorm';
import { startGrpcServer } from '../../src/grpc/server';
import { createLogger } from '../../src/logger';
import type { Metrics } from '../../src/observability/metrics';
import { withMigratedScratchDatabase } from './scratch-database';
import { newTenant, type TestTenant } from './tenant';

/** A server of a test's own, on its own database, with a tenant. */
export interface ScratchServer {
  dataSource: DataSource;
  address: string;
  tenant: TestTenant;
}

/**
 * Runs `work` against a server on a migrated scratch database (see
 * withMigratedScratchDatabase) with one tenant, for tests the suite's
 * servers must not touch: their background sweeps, their database's clock.
 * With `sweeps: false` the server runs no housekeeping (no expiry sweep: a
 * lapse or an expiry is written only by the calls themselves). The server
 * is shut down after, whatever `work` threw, before the database is
 * dropped.
 */
export async function withScratchServer(
  test: Mocha.Context,
  prefix: string,
  work: (server: ScratchServer) => Promise<void>,
  options: { sweeps?: boolean; metrics?: Metrics; prepare?: (admin: Client, name: string) => Promise<void> } = {},
): Promise<void> {
  await withMigratedScratchDatabase(
    test,
    prefix,
    async (dataSource) => {
      const tenant = await newTenant(dataSource);
      const grpc = await startGrpcServer(
        { dataSource, logger: createLogger('silent'), metrics: options.metrics },
        { address: '127.0.0.1:0', authCacheMs: 0, housekeeping: options.sweeps ?? true },
      );
      try {
        await work({ dataSource, address: `127.0.0.1:${grpc.port}`, tenant });
      } finally {
        await grpc.shutdown(5_000);
      }
    },
    { poolSize: 4, prepare: options.prepare },
  );
}
