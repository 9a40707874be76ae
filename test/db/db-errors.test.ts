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

  it('but not every 55000, nor a bug', async () => {
    const err = await thrownBy(url, (client) => client.query(`SELECT currval('no_such_sequence_' || 'x')`).then(() => client.query('SELECT 1/0')));
    expect(isDatabaseUnavailable(err)).to.equal(false);
    expect(isDatabaseUnavailable(Object.assign(new Error('currval of sequence "s" is not yet defined in this session'), { code: '55000' }))).to.equal(false);
    expect(toCallerError(err).code).to.equal(status.INTERNAL);
  });
});
