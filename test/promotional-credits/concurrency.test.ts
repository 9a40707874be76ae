import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { CreditType, PromotionalCreditType, type PromotionalCredit } from '../../gen/credits/v1/promotional_credit_service';
import { auditLedger, runLedgerAudit } from '../../src/promotional-credits/ledger-audit';
import { ledgerOf, ledgerProblemsOf } from '../support/ledger';
import { promotionalCredits, sharedServer, type TestServer } from '../support/server';
import { decodeError } from '../support/status';
import { newTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

const base = { currencyCode: '', description: 'load', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };
const { PROMOTIONAL_CREDIT_TYPE_INCREMENT: INCREMENT } = PromotionalCreditType;

describe('PromotionalCreditService under concurrency (two server processes)', () => {
  const t = useTenantClients({ replica: true });
  /** Even calls go to the in-process server, odd ones to the replica process. */
  const on = (i: number) => (i % 2 === 0 ? t.promotionalCredits : t.replica.promotionalCredits);

  it('keeps balance = sum of entries and an unbroken chain under 160 parallel adds and deducts on one customer', async function () {
    this.timeout(120_000);
    const customerId = 'hot';
    const initial = 500n;
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: initial });

    // 80 adds of 10 (800 in all) and 80 deducts of 25 (2000 in all), shuffled and sent at once.
    // At most 500 + 800 = 1300 can ever be deducted, so at least 28 deducts must fail;
    // the initial 500 covers 20 deducts whatever the order, so at least 20 succeed.
    const ops = [...Array(80).fill('add'), ...Array(80).fill('deduct')] as Array<'add' | 'deduct'>;
    for (let i = ops.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [ops[i], ops[j]] = [ops[j]!, ops[i]!];
    }
    const results = await Promise.allSettled(
      ops.map((op, i) =>
        op === 'add'
          ? on(i).addPromotionalCredits({ ...base, customerId, amount: 10n, reference: `op-${i}` })
          : on(i).deductPromotionalCredits({ ...base, customerId, amount: 25n, reference: `op-${i}` }),
      ),
    );

    let expectedBalance = initial;
    let deductsOk = 0;
    let deductsRefused = 0;
    const written: PromotionalCredit[] = [];
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') {
        const entry = result.value.promotionalCredit!;
        written.push(entry);
        expect(entry.closingBalance >= 0n, 'closing balance never negative').to.equal(true);
        if (ops[i] === 'add') expectedBalance += 10n;
        else {
          expectedBalance -= 25n;
          deductsOk++;
        }
      } else {
        expect(ops[i], 'only deducts may fail').to.equal('deduct');
        const err = decodeError(result.reason as ServiceError);
        expect([status[err.code], err.reason]).to.deep.equal(['FAILED_PRECONDITION', 'INSUFFICIENT_BALANCE']);
        deductsRefused++;
      }
    });
    expect(deductsOk, 'deducts that succeeded').to.be.at.least(20);
    expect(deductsRefused, 'deducts refused').to.be.at.least(28);
    expect(expectedBalance >= 0n).to.equal(true);

    // The balance is what the acknowledged calls add up to, and what the ledger adds up to.
    const balance = (await t.promotionalCredits.getCustomerBalance({ customerId })).balance!.balances;
    expect(balance.map((b) => [b.currencyCode, b.amount])).to.deep.equal([['USD', expectedBalance]]);
    const ledger = await ledgerOf(t.promotionalCredits, customerId);
    expect(ledger).to.have.length(1 + written.length);
    expect(new Set(ledger.map((e) => e.id))).to.deep.equal(new Set([ledger[0]!.id, ...written.map((e) => e.id)]));

    // Each entry's closing balance is the previous one plus or minus its amount; no deduct overdrew.
    let running = 0n;
    for (const entry of ledger) {
      running += entry.type === INCREMENT ? entry.amount : -entry.amount;
      expect(running >= 0n, 'no deduct overdrew').to.equal(true);
      expect(entry.closingBalance).to.equal(running);
    }
    expect(running).to.equal(expectedBalance);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('keeps the chain when Set and whole-balance deducts race with adds and deducts', async function () {
    this.timeout(120_000);
    const customerId = 'mixed';
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 1000n });
    const calls = Array.from({ length: 120 }, (_, i) => {
      switch (i % 6) {
        case 0:
          return on(i >> 1).setPromotionalCredits({ ...base, customerId, amount: BigInt(100 + i) });
        case 1:
          return on(i >> 1).deductPromotionalCredits({ ...base, customerId });
        case 2:
        case 3:
          return on(i >> 1).addPromotionalCredits({ ...base, customerId, amount: BigInt(1 + i) });
        default:
          return on(i >> 1).deductPromotionalCredits({ ...base, customerId, amount: 7n });
      }
    });
    // Another currency of the same customer changes at the same time.
    const jpy = Array.from({ length: 40 }, (_, i) =>
      i % 2 === 0
        ? on(i >> 1).addPromotionalCredits({ ...base, customerId, amount: 3n, currencyCode: 'JPY' })
        : on(i >> 1).setPromotionalCredits({ ...base, customerId, amount: 1n, currencyCode: 'JPY' }),
    );
    const results = await Promise.allSettled([...calls, ...jpy]);
    for (const result of results) {
      if (result.status === 'rejected') expect(decodeError(result.reason as ServiceError).reason).to.equal('INSUFFICIENT_BALANCE');
    }
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    const ledger = await ledgerOf(t.promotionalCredits, customerId);
    const usd = ledger.filter((e) => e.currencyCode === 'USD');
    const balances = (await t.promotionalCredits.getCustomerBalance({ customerId })).balance!.balances;
    expect(balances.find((b) => b.currencyCode === 'USD')!.amount).to.equal(usd[usd.length - 1]!.closingBalance);
  });
});

describe('auditLedger', () => {
  let server: TestServer;

  before(async () => {
    server = await sharedServer();
  });

  it('finds nothing wrong with a ledger written through the API', async () => {
    const tenant = await newTenant(server.dataSource);
    const client = promotionalCredits(server.address, tenant.rwKey);
    try {
      await client.addPromotionalCredits({ ...base, customerId: 'a', amount: 10n });
      await client.deductPromotionalCredits({ ...base, customerId: 'a', amount: 4n });
      await client.setPromotionalCredits({ ...base, customerId: 'b', amount: 9n, currencyCode: 'JPY' });
      const audit = await runLedgerAudit(server.dataSource.manager, { tenantId: tenant.id });
      expect(audit).to.deep.equal({ balancesChecked: 2, entriesChecked: 3, brokenBalances: 0, problems: [] });
    } finally {
      client.close();
    }
  });

  it('names the tenant, customer, currency and what is wrong in a broken ledger', async () => {
    const tenant = await newTenant(server.dataSource);
    // The broken rows live only inside this transaction, which is rolled back:
    // nothing else (nor a later audit of the whole database) ever sees them.
    const runner = server.dataSource.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    try {
      const balance = (customer: string, amount: number, currency = 'USD') =>
        runner.query(`INSERT INTO promotional_credit_balances (tenant_id, customer_id, currency_code, amount) VALUES ($1, $2, $3, $4)`, [
          tenant.id,
          customer,
          currency,
          amount,
        ]);
      const entry = async (customer: string, type: 'INCREMENT' | 'DECREMENT', amount: number, closing: number, currency = 'USD') => {
        const rows: Array<{ id: string }> = await runner.query(
          `INSERT INTO promotional_credits (tenant_id, customer_id, currency_code, type, amount, description, credit_type, closing_balance, done_by)
           VALUES ($1, $2, $3, $4, $5, 'forged', 'GENERAL', $6, 'test') RETURNING id`,
          [tenant.id, customer, currency, type, amount, closing],
        );
        return rows[0]!.id;
      };
      // Healthy: 100 - 30 = 70.
      await balance('ok', 70);
      await entry('ok', 'INCREMENT', 100, 100);
      await entry('ok', 'DECREMENT', 30, 70);
      // The second entry claims 150 where the chain gives 200, and the balance follows the claim.
      await balance('chain', 150);
      await entry('chain', 'INCREMENT', 100, 100);
      const breaking = await entry('chain', 'INCREMENT', 100, 150);
      // Chain intact (closing 150) but the balance row says 120.
      await balance('drift', 120, 'JPY');
      await entry('drift', 'INCREMENT', 100, 100, 'JPY');
      await entry('drift', 'INCREMENT', 50, 150, 'JPY');
      // A balance with no entries at all.
      await balance('phantom', 30, 'BHD');
      // A first entry that starts the chain from something other than zero.
      await balance('start', 80);
      const first = await entry('start', 'DECREMENT', 20, 80);

      const problems = await auditLedger(runner.manager, { tenantId: tenant.id });
      const summary = problems.map((p) => [p.customerId, p.currencyCode, p.kind]);
      expect(summary).to.deep.equal([
        ['chain', 'USD', 'BALANCE_NOT_SUM_OF_ENTRIES'],
        ['chain', 'USD', 'CLOSING_BALANCE_CHAIN_BROKEN'],
        ['drift', 'JPY', 'BALANCE_NOT_SUM_OF_ENTRIES'],
        ['drift', 'JPY', 'LAST_CLOSING_BALANCE_MISMATCH'],
        ['phantom', 'BHD', 'BALANCE_NOT_SUM_OF_ENTRIES'],
        ['start', 'USD', 'BALANCE_NOT_SUM_OF_ENTRIES'],
        ['start', 'USD', 'CLOSING_BALANCE_CHAIN_BROKEN'],
      ]);
      for (const p of problems) {
        expect(p.tenantSlug).to.equal(tenant.slug);
        expect(p.tenantId).to.equal(tenant.id);
        expect(p.message).to.include(`tenant ${tenant.slug}, customer ${p.customerId}, ${p.currencyCode}: `);
      }
      const message = (customer: string, kind: string) => problems.find((p) => p.customerId === customer && p.kind === kind)!.message;
      expect(message('chain', 'BALANCE_NOT_SUM_OF_ENTRIES')).to.include('balance is 150 but its 2 entries sum to 200');
      expect(message('chain', 'CLOSING_BALANCE_CHAIN_BROKEN')).to.include(`entry ${breaking}`).and.include('closing_balance 150, expected closing_balance 200');
      expect(message('drift', 'LAST_CLOSING_BALANCE_MISMATCH')).to.include("balance is 120 but the last entry's closing_balance is 150");
      expect(message('phantom', 'BALANCE_NOT_SUM_OF_ENTRIES')).to.include('balance is 30 but its 0 entries sum to 0');
      expect(message('start', 'CLOSING_BALANCE_CHAIN_BROKEN')).to.include(`entry ${first}`).and.include('expected closing_balance -20');

      const audit = await runLedgerAudit(runner.manager, { tenantId: tenant.id });
      expect(audit).to.deep.include({ balancesChecked: 5, entriesChecked: 7, brokenBalances: 4 });
      // The whole-database audit (what `credits verify` runs) sees them too.
      const everything = await runLedgerAudit(runner.manager);
      expect(everything.brokenBalances).to.be.at.least(4);
      expect(everything.problems.filter((p) => p.tenantId === tenant.id)).to.deep.equal(problems);

      // Entries whose balance row is missing (the foreign key normally forbids it;
      // replica mode skips it, where this database user may use it).
      await runner.query('SAVEPOINT orphan');
      try {
        await runner.query(`SET LOCAL session_replication_role = replica`);
        await entry('orphan', 'INCREMENT', 5, 5, 'EUR');
        await runner.query(`SET LOCAL session_replication_role = origin`);
        const orphan = (await auditLedger(runner.manager, { tenantId: tenant.id })).filter((p) => p.customerId === 'orphan');
        expect(orphan.map((p) => [p.kind, p.currencyCode])).to.deep.equal([['ENTRIES_WITHOUT_BALANCE', 'EUR']]);
        expect(orphan[0]!.message).to.include('1 entry but no balance row');
      } catch (err) {
        if ((err as { code?: string }).code !== '42501') throw err; // not allowed: skip this part
        await runner.query('ROLLBACK TO SAVEPOINT orphan');
      }
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
    expect(await ledgerProblemsOf(server.dataSource.manager, tenant.id)).to.deep.equal([]);
  });
});
