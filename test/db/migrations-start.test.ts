import { expect } from 'chai';
import { Client } from 'pg';
import { createDataSource } from '../../src/db/data-source';
import { freePort, spawnServer } from '../support/child-server';
import { testDatabaseUrl } from '../support/database';

/** The advisory lock runMigrations takes (src/db/data-source.ts). */
const MIGRATION_LOCK = 7_341_882_001;

/**
 * Migrations run on connections of their own, without the pool's statement
 * timeout. Found in review: a replica waiting more than 30 s for another's
 * migration crashed (its pg_advisory_lock canceled by the timeout), a
 * migration over 30 s could never be applied, and CREDITS_DB_POOL_SIZE=1
 * never started (the lock took the only connection).
 */
describe('migrations at start', function () {
  this.timeout(60_000);

  it('a server with a pool of one connection starts', async () => {
    const server = await spawnServer(await testDatabaseUrl(), await freePort(), { CREDITS_DB_POOL_SIZE: '1' });
    server.process.kill('SIGINT');
    expect(await server.exited).to.deep.include({ code: 0 });
  });

  it('a replica waits for another one migrating, and starts once it is done', async () => {
    const holder = new Client({ connectionString: await testDatabaseUrl() });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      const starting = spawnServer(await testDatabaseUrl(), await freePort());
      // It waits on the lock, on a connection of the migrations (not the pool's).
      let waiting = 0;
      for (const deadline = Date.now() + 30_000; waiting === 0 && Date.now() < deadline; ) {
        const { rows } = await holder.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'credits-migrate' AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_lock%'`,
        );
        waiting = rows[0].n;
        if (waiting === 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect(waiting, 'the replica waits for the lock').to.equal(1);
      await holder.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
      const server = await starting;
      server.process.kill('SIGINT');
      expect(await server.exited).to.deep.include({ code: 0 });
    } finally {
      await holder.end();
    }
  });

  it('without the pool statement timeout', () => {
    const extra = (noStatementTimeout: boolean, statementTimeoutMs?: number) =>
      createDataSource({ url: 'postgres://x@127.0.0.1/x', poolSize: 2, connectTimeoutMs: 1000, noStatementTimeout, statementTimeoutMs }).options
        .extra as Record<string, unknown>;
    expect(extra(false).statement_timeout).to.equal(30_000);
    expect(extra(false, 200).statement_timeout).to.equal(200);
    expect(extra(true)).to.not.have.property('statement_timeout');
    expect(extra(true, 200)).to.not.have.property('statement_timeout');
  });
});
