import { expect } from 'chai';
import { freePort, spawnServer } from '../support/child-server';
import { openTestDataSource, testDatabaseUrl } from '../support/database';

/**
 * CREDITS_SESSION_DATABASE_URL: what needs a session of its own (the
 * migrations' advisory lock at start, the LISTEN for revocations) goes there
 * rather than to DATABASE_URL, which may be a transaction-mode pooler.
 */
describe('observability: CREDITS_SESSION_DATABASE_URL', function () {
  this.timeout(90_000);

  it('runs the migrations through it: a server whose session URL is unreachable does not start', async () => {
    const nobody = await freePort();
    const url = new URL(await testDatabaseUrl());
    url.port = String(nobody);
    url.hostname = '127.0.0.1';
    const started = await spawnServer(await testDatabaseUrl(), await freePort(), { CREDITS_SESSION_DATABASE_URL: url.toString() }).then(
      (server) => {
        server.process.kill('SIGKILL');
        return true;
      },
      (err: Error) => err.message,
    );
    expect(started).to.be.a('string').and.match(/ECONNREFUSED/);
  });

  it('serves with it, its revocation listener connected there', async () => {
    const server = await spawnServer(await testDatabaseUrl(), await freePort(), { CREDITS_SESSION_DATABASE_URL: await testDatabaseUrl() });
    const dataSource = await openTestDataSource(1);
    try {
      const rows: Array<{ n: number }> = await dataSource.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [
        `credits-auth-listener (pid ${server.process.pid})`,
      ]);
      expect(rows[0]!.n).to.equal(1);
    } finally {
      await dataSource.destroy();
      server.process.kill('SIGTERM');
      await server.exited;
    }
  });
});
