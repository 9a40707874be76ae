import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { freePort, healthStatus, spawnServer } from '../support/child-server';
import { openTestDataSource, testDatabaseUrl } from '../support/database';
import { promotionalCredits } from '../support/server';
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
});
