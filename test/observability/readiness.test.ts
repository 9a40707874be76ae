import { expect } from 'chai';
import { SERVICE_NAMES, startGrpcServer, type GrpcServer } from '../../src/grpc/server';
import { createLogger } from '../../src/logger';
import { checkHealth } from '../support/health-status';
import { openOwnDatabase, type OwnDatabase } from '../support/own-database';

/**
 * Readiness: grpc.health.v1 answers NOT_SERVING for the server and each
 * service while PostgreSQL is down, and SERVING again once it is back,
 * without a restart. Uses an embedded PostgreSQL of its own, since it stops
 * it (as test/faults/outage.test.ts does).
 */
describe('observability: readiness follows the database', function () {
  this.timeout(180_000);
  const names = ['', ...SERVICE_NAMES];
  let own: OwnDatabase;
  let grpc: GrpcServer;

  before(async () => {
    own = await openOwnDatabase('readiness', { poolSize: 4, connectTimeoutMs: 1000 });
    grpc = await startGrpcServer(
      { dataSource: own.dataSource, logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent') },
      { address: '127.0.0.1:0', readinessIntervalMs: 200 },
    );
  });
  after(async () => {
    await grpc?.shutdown(1000);
    await own?.close();
  });

  const statuses = async () => Promise.all(names.map((name) => checkHealth(`127.0.0.1:${grpc.port}`, name)));

  /** Polls until every name answers `wanted` (at most 30 s); answers what they said last. */
  async function until(wanted: string): Promise<string[]> {
    const deadline = Date.now() + 30_000;
    let last = await statuses();
    while (last.some((s) => s !== wanted) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      last = await statuses();
    }
    return last;
  }

  it('turns NOT_SERVING while PostgreSQL is down and SERVING when it is back', async () => {
    expect(await statuses(), 'serving at first').to.deep.equal(names.map(() => 'SERVING'));
    await own.stop();
    expect(await until('NOT_SERVING'), 'with the database down').to.deep.equal(names.map(() => 'NOT_SERVING'));
    await own.start();
    expect(await until('SERVING'), 'with the database back').to.deep.equal(names.map(() => 'SERVING'));
  });
});
