import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { freePort, healthStatus, spawnServer } from '../support/child-server';
import { openTestDataSource, testDatabaseUrl } from '../support/database';
import { withBalanceLocked } from '../support/ledger';
import { promotionalCredits } from '../support/server';
import { decodeError } from '../support/status';
import { newTenant } from '../support/tenant';

/** Resolves once a backend of the server (application_name credits) waits on a row lock: its one pooled connection is taken. */
async function untilWaitingOnLock(dataSource: DataSource): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const [{ n }] = (await dataSource.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'credits' AND wait_event_type = 'Lock' AND query LIKE '%promotional_credit_apply%'`,
    )) as Array<{ n: number }>;
    if (n > 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the deduction never waited on the row lock');
}

/**
 * Every pooled connection busy is not a database that is down: the call that
 * waited too long for one is still UNAVAILABLE DATABASE_UNAVAILABLE (retry),
 * but its message and the server's warning say the connections were busy,
 * while health stays SERVING (the database answers). Found in review: the
 * message said "the credits database is unavailable", sending on-call to a
 * healthy database.
 */
describe('faults: an exhausted connection pool', function () {
  this.timeout(120_000);
  let dataSource: DataSource;

  before(async () => {
    dataSource = await openTestDataSource(2);
  });
  after(async () => {
    await dataSource.destroy();
  });

  /** A server of its own with ONE pooled connection (no sweep to take it), a tenant and a client of it. */
  async function serverWithPoolOfOne(connectTimeoutMs: number) {
    const tenant = await newTenant(dataSource);
    const server = await spawnServer(await testDatabaseUrl(), await freePort(), {
      CREDITS_DB_POOL_SIZE: '1',
      CREDITS_DB_CONNECT_TIMEOUT_MS: String(connectTimeoutMs),
      CREDITS_EXPIRY_SWEEP_SECONDS: '3600',
    });
    return { tenant, server, client: promotionalCredits(server.address, tenant.rwKey) };
  }

  it('answers UNAVAILABLE saying every connection was busy, logs it, stays SERVING, and the waiting call still completes', async () => {
    const { tenant, server, client } = await serverWithPoolOfOne(500);
    const base = { currencyCode: '', description: 'pool', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };
    try {
      // Creates the balance and puts the key in the server's cache (its lookup needs no connection after).
      await client.addPromotionalCredits({ ...base, customerId: 'pool-held', amount: 100n });
      let deduct: Promise<{ balance?: { balances: Array<{ amount: bigint }> } | undefined }> | undefined;
      await withBalanceLocked(dataSource, tenant.id, 'pool-held', async () => {
        // Takes the one pooled connection and waits on the row lock.
        deduct = client.deductPromotionalCredits({ ...base, customerId: 'pool-held', amount: 10n });
        await untilWaitingOnLock(dataSource);
        let refused: ServiceError | undefined;
        await client.getCustomerBalance({ customerId: 'pool-other' }).catch((err: ServiceError) => (refused = err));
        expect(refused, 'the read waited for a connection and gave up').to.not.equal(undefined);
        const error = decodeError(refused!);
        expect([status[error.code], error.reason]).to.deep.equal(['UNAVAILABLE', 'DATABASE_UNAVAILABLE']);
        expect(error.message).to.match(/^Every database connection of this server was busy/);
        expect(await healthStatus(server.address), 'the database answers: still SERVING').to.equal('SERVING');
      });
      const deducted = await deduct!;
      expect(deducted.balance?.balances.map((b) => b.amount), 'written once the lock was let go').to.deep.equal([90n]);
      // The call's warning carries the error (log lines are written within 100 ms of being logged).
      const logged = () => server.output().includes('all 1 pooled connections were in use');
      for (let i = 0; i < 50 && !logged(); i++) await new Promise((r) => setTimeout(r, 100));
      expect(server.output()).to.include('PoolExhaustedError').and.to.include('all 1 pooled connections were in use');
    } finally {
      client.close();
      server.process.kill('SIGTERM');
      await server.exited;
    }
  });

  it('reads a balance as of when the read runs: credits that expired while it waited for a connection are not counted', async function () {
    const { tenant, server, client } = await serverWithPoolOfOne(5_000);
    const base = { currencyCode: '', description: 'pool', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };
    try {
      await client.addPromotionalCredits({ ...base, customerId: 'pool-held', amount: 100n });
      const expiry = new Date(Date.now() + 1_500);
      await client.addPromotionalCredits({ ...base, customerId: 'pool-reader', amount: 50n, expireTime: expiry });
      let read: ReturnType<typeof client.getCustomerBalance> | undefined;
      let deduct: Promise<unknown> | undefined;
      await withBalanceLocked(dataSource, tenant.id, 'pool-held', async () => {
        deduct = client.deductPromotionalCredits({ ...base, customerId: 'pool-held', amount: 10n }); // holds the one connection
        await untilWaitingOnLock(dataSource);
        read = client.getCustomerBalance({ customerId: 'pool-reader' }); // waits for the connection past the lot's expiry
        await new Promise((r) => setTimeout(r, Math.max(0, expiry.getTime() - Date.now()) + 500));
      });
      await deduct;
      const balances = (await read!).balance!.balances;
      expect(balances.map((b) => [b.currencyCode, b.amount])).to.deep.equal([['USD', 0n]]);
    } finally {
      client.close();
      server.process.kill('SIGTERM');
      await server.exited;
    }
  });
});
