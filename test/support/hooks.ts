import { stopTestDatabase, testDatabaseUrl } from './database';
import { stopReplicaServer, stopSharedServer } from './server';

/** Mocha root hooks: one test database and one shared server for the run. */
export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(120_000);
    await testDatabaseUrl();
  },
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await stopReplicaServer();
    await stopSharedServer();
    await stopTestDatabase();
  },
};
