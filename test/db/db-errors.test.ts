import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Client } from 'pg';
import { isDatabaseUnavailable } from '../../src/db/db-errors';
import { toCallerError } from '../../src/grpc/error-status';
import { testDatabaseUrl } from '../support/database';
import { withScratchDatabase } from '../support/scratch-database';

/** What `work` on a client of `url` throws. */
async function thrownBy(url: string, work: (client: Client) => Promise<unknown>): Promise<unknown> {
  const client = new Client({ connectionString: url });
  try {
    await client.connect();
    await work(client);
  } catch (err) {
    return err;
  } finally {
    await client.end().catch(() => {});
  }
  throw new Error('expected an error');
}

/**
 * Errors PostgreSQL raises when it cannot take a call now, as pg hands them
 * over: the caller is told UNAVAILABLE (retry), not INTERNAL ("a bug"). Found
 * in review: writes to a read-only database and a database refusing
 * connections answered INTERNAL, which @credits/client does not retry.
 */
describe('database errors a caller may retry', function () {
  this.timeout(30_000);
  let url: string;

  before(async () => {
    url = await testDatabaseUrl();
  });

  const expectUnavailable = (err: unknown) => {
    expect(isDatabaseUnavailable(err), String(err)).to.equal(true);
    expect(toCallerError(err)).to.deep.include({ code: status.UNAVAILABLE, reason: 'DATABASE_UNAVAILABLE' });
  };

  it('a write on a read-only server (a standby after a failover)', async () => {
    const err = await thrownBy(url, async (client) => {
      await client.query('BEGIN READ ONLY');
      await client.query('CREATE TEMPORARY TABLE t (n int)');
    });
    expect((err as { code?: string }).code).to.equal('25006');
    expectUnavailable(err);
  });

  it('a database that does not accept connections', async function () {
    await withScratchDatabase(this, 'credits_closed', 'ALLOW_CONNECTIONS false', async (closed) => {
      const err = await thrownBy(closed, async () => {});
      expect((err as { code?: string }).code).to.equal('55000');
      expectUnavailable(err);
    });
  });

  it('a deadlock nothing retried is ABORTED CONCURRENCY_CONFLICT (retry), not INTERNAL', async () => {
    const [a, b] = [new Client({ connectionString: url }), new Client({ connectionString: url })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      await a.query(`CREATE TABLE IF NOT EXISTS deadlock_probe (n int PRIMARY KEY); INSERT INTO deadlock_probe VALUES (1), (2) ON CONFLICT DO NOTHING`);
      await a.query('BEGIN');
      await b.query('BEGIN');
      await a.query('UPDATE deadlock_probe SET n = n WHERE n = 1');
      await b.query('UPDATE deadlock_probe SET n = n WHERE n = 2');
      const crossed = await Promise.allSettled([a.query('UPDATE deadlock_probe SET n = n WHERE n = 2'), b.query('UPDATE deadlock_probe SET n = n WHERE n = 1')]);
      const err = crossed.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason as { code?: string };
      expect(err.code).to.equal('40P01');
      // Answered as a conflict to retry, logged as a bug (every path that can deadlock retries).
      expect(toCallerError(err)).to.deep.include({ code: status.ABORTED, reason: 'CONCURRENCY_CONFLICT', expected: false });
    } finally {
      await Promise.all([a.query('ROLLBACK').catch(() => {}), b.query('ROLLBACK').catch(() => {})]);
      await a.query('DROP TABLE IF EXISTS deadlock_probe');
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('but not every 55000, nor a bug', async () => {
    const err = await thrownBy(url, (client) => client.query(`SELECT currval('no_such_sequence_' || 'x')`).then(() => client.query('SELECT 1/0')));
    expect(isDatabaseUnavailable(err)).to.equal(false);
    expect(isDatabaseUnavailable(Object.assign(new Error('currval of sequence "s" is not yet defined in this session'), { code: '55000' }))).to.equal(false);
    expect(toCallerError(err).code).to.equal(status.INTERNAL);
  });
});
