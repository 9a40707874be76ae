import { credentials, Metadata, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { freePort, healthStatus, spawnServer } from '../support/child-server';
import { HealthClient } from '../support/health-status';
import { openTestDataSource, testDatabaseUrl } from '../support/database';
import { promotionalCredits } from '../support/server';
import { withBalanceLocked } from '../support/ledger';
import { decodeError } from '../support/status';
import { newTenant } from '../support/tenant';

/**
 * SIGTERM: health turns NOT_SERVING, new calls are refused, calls in flight
 * finish, then the process exits 0. The calls are kept in flight by holding
 * the customer's balance row lock from the test.
 */
describe('faults: graceful shutdown', function () {
  this.timeout(120_000);
  let dataSource: DataSource;

  before(async () => {
    dataSource = await openTestDataSource(4);
  });
  after(async () => {
    await dataSource.destroy();
  });

  it('drains calls in flight and exits 0', async () => {
    const tenant = await newTenant(dataSource);
    const port = await freePort();
    const server = await spawnServer(await testDatabaseUrl(), port, { CREDITS_SHUTDOWN_GRACE_MS: '30000' });
    const client = promotionalCredits(server.address, tenant.rwKey);
    const add = () =>
      client.addPromotionalCredits({ customerId: 'drain', amount: 5n, currencyCode: '', description: 'drain', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' });
    await add(); // creates the balance row

    const runner = dataSource.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    await runner.query('SELECT amount FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2 FOR UPDATE', [tenant.id, 'drain']);
    const inFlight = Array.from({ length: 10 }, () => add());
    await new Promise((r) => setTimeout(r, 500)); // the calls reach the lock and wait

    server.process.kill('SIGTERM');
    let health: string | undefined;
    for (let i = 0; i < 50 && health !== 'NOT_SERVING'; i++) {
      health = await healthStatus(server.address);
      if (health !== 'NOT_SERVING') await new Promise((r) => setTimeout(r, 50));
    }
    expect(health, 'health while draining').to.equal('NOT_SERVING');
    let refused: ServiceError | undefined;
    try {
      await add();
    } catch (err) {
      refused = err as ServiceError;
    }
    expect(refused, 'a new call during the drain is refused').to.not.equal(undefined);
    expect(decodeError(refused!).code).to.equal(status.UNAVAILABLE);

    await runner.commitTransaction();
    await runner.release();
    const results = await Promise.allSettled(inFlight);
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => decodeError(r.reason as ServiceError));
    expect(failures.map((f) => `${status[f.code]} ${f.reason} ${f.message}`)).to.deep.equal([]);
    const exit = await server.exited;
    expect(exit).to.deep.equal({ code: 0, signal: null });
    client.close();
    const rows: Array<{ amount: string }> = await dataSource.query(
      'SELECT amount FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2',
      [tenant.id, 'drain'],
    );
    expect(rows[0]!.amount).to.equal('55');
  });

  it('at the end of the grace period ends the database work of calls still in flight (rolled back, answered UNAVAILABLE) and exits, open streams or not', async () => {
    const tenant = await newTenant(dataSource);
    const port = await freePort();
    // A pool of 2: two deductions hold its connections, two more wait in its queue for one.
    const server = await spawnServer(await testDatabaseUrl(), port, { CREDITS_SHUTDOWN_GRACE_MS: '1000', CREDITS_DB_POOL_SIZE: '2' });
    const client = promotionalCredits(server.address, tenant.rwKey);
    const base = { customerId: 'cut', currencyCode: '', description: 'cut', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };
    await client.addPromotionalCredits({ ...base, amount: 1000n });
    // A health Watch stays open until the server closes its connection.
    const health = new HealthClient(server.address, credentials.createInsecure()) as unknown as { watch(request: { service: string }): ClientReadableStream<unknown>; close(): void };
    const watch = health.watch({ service: '' });
    watch.on('data', () => undefined);
    const watchEnded = new Promise<void>((resolve) => {
      watch.on('error', () => resolve());
      watch.on('end', () => resolve());
    });

    const runner = dataSource.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    try {
      await runner.query('SELECT amount FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2 FOR UPDATE', [tenant.id, 'cut']);
      // 150 ms apart, so that each is a statement of its own (calls arriving together share one).
      const inFlight: Array<Promise<unknown>> = [];
      for (let i = 0; i < 4; i++) {
        inFlight.push(client.deductPromotionalCredits({ ...base, amount: 100n }));
        await new Promise((r) => setTimeout(r, 150));
      }
      await new Promise((r) => setTimeout(r, 300)); // they reach the lock, or the pool's queue, and wait

      server.process.kill('SIGTERM');
      const results = await Promise.allSettled(inFlight);
      // Told to retry: SHUTTING_DOWN, or a connection cut (no reason) for one that answered after the connections closed.
      const answers = results.map((r) => (r.status === 'fulfilled' ? 'written' : status[decodeError(r.reason as ServiceError).code]));
      expect(answers).to.deep.equal(['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
      const reasons = results.map((r) => (r.status === 'rejected' ? decodeError(r.reason as ServiceError).reason : undefined));
      expect(reasons.filter((reason) => reason === 'SHUTTING_DOWN'), 'those that held a connection').to.have.length.at.least(2);
      // It exits while the lock is still held: nothing of it waits on the database any more.
      expect(await server.exited).to.deep.equal({ code: 0, signal: null });
      await watchEnded;
    } finally {
      await runner.commitTransaction();
      await runner.release();
      health.close();
      client.close();
    }
    // Told to retry, and indeed nothing was written (before: each deduction committed once the lock was released).
    const rows: Array<{ amount: string; decrements: number }> = await dataSource.query(
      `SELECT b.amount, (SELECT count(*)::int FROM promotional_credits e WHERE e.tenant_id = b.tenant_id AND e.customer_id = b.customer_id AND e.type = 'DECREMENT') AS decrements
         FROM promotional_credit_balances b WHERE b.tenant_id = $1 AND b.customer_id = $2`,
      [tenant.id, 'cut'],
    );
    expect(rows).to.deep.equal([{ amount: '1000', decrements: 0 }]);
    expect(server.output()).to.include('shutdown grace period over');
  });

  it('answers every call it cut that held a connection UNAVAILABLE SHUTTING_DOWN, the last one too', async () => {
    // Found in review: the last cut call to finish often got "Connection dropped"
    // (its answer was logged, but the connections were closed before it went out).
    const tenant = await newTenant(dataSource);
    const server = await spawnServer(await testDatabaseUrl(), await freePort(), { CREDITS_SHUTDOWN_GRACE_MS: '1000' });
    const client = promotionalCredits(server.address, tenant.rwKey);
    const base = { customerId: 'cut-all', currencyCode: '', description: 'cut', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };
    await client.addPromotionalCredits({ ...base, amount: 1000n });
    try {
      await withBalanceLocked(dataSource, tenant.id, 'cut-all', async () => {
        const inFlight: Array<Promise<unknown>> = [];
        for (let i = 0; i < 6; i++) {
          const metadata = new Metadata();
          metadata.set('idempotency-key', `cut-all-${i}`);
          inFlight.push(client.deductPromotionalCredits({ ...base, amount: 10n }, metadata));
          await new Promise((r) => setTimeout(r, 50));
        }
        await new Promise((r) => setTimeout(r, 300));
        server.process.kill('SIGTERM');
        const results = await Promise.allSettled(inFlight);
        const answers = results.map((r) => (r.status === 'fulfilled' ? 'written' : `${status[decodeError(r.reason as ServiceError).code]} ${decodeError(r.reason as ServiceError).reason ?? r.reason.details}`));
        expect(answers).to.deep.equal(Array(6).fill('UNAVAILABLE SHUTTING_DOWN'));
        expect(await server.exited).to.deep.equal({ code: 0, signal: null });
      });
    } finally {
      client.close();
    }
  });
});
