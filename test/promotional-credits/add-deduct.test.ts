import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { currencyBalance } from '../support/ledger';
import { CreditType, PromotionalCreditType } from '../../gen/credits/v1/promotional_credit_service';
import { promotionalCredits } from '../support/server';
import { expectError } from '../support/status';
import { newTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

const base = { currencyCode: '', description: 'goodwill', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };

describe('PromotionalCreditService add and deduct', () => {
  const t = useTenantClients();

  it('adds credits, records the closing balance and who did it', async () => {
    const res = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'cust-1', amountDecimal: '10.50', reference: 'inv-7' });
    const entry = res.promotionalCredit!;
    expect(entry.type).to.equal(PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_INCREMENT);
    expect(entry.amount).to.equal(1050n);
    expect(entry.amountDecimal).to.equal('10.50');
    expect(entry.currencyCode).to.equal('USD');
    expect(entry.closingBalance).to.equal(1050n);
    expect(entry.doneBy).to.equal('rw-key');
    expect(entry.creditType).to.equal(CreditType.CREDIT_TYPE_GENERAL);
    expect(entry.reference).to.equal('inv-7');
    expect(res.balance).to.deep.equal({ customerId: 'cust-1', balances: [currencyBalance('USD', 1050n, '10.50')] });

    const again = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'cust-1', amount: 25n });
    expect(again.promotionalCredit!.closingBalance).to.equal(1075n);
  });

  it('round-trips amounts above 2^53 exactly', async () => {
    const res = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'big', amount: 9007199254740993n });
    expect(res.promotionalCredit!.amount).to.equal(9007199254740993n);
    expect(res.promotionalCredit!.amountDecimal).to.equal('90071992547409.93');
    const got = await t.promotionalCredits.getPromotionalCredit({ id: res.promotionalCredit!.id });
    expect(got.promotionalCredit!.amount).to.equal(9007199254740993n);
    const balance = await t.promotionalCredits.getCustomerBalance({ customerId: 'big' });
    expect(balance.balance!.balances[0]!.amount).to.equal(9007199254740993n);
  });

  it('refuses a deduct larger than the balance and writes nothing', async () => {
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c', amount: 500n });
    const err = await expectError(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c', amount: 501n }), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');
    expect(err.metadata).to.include({ balance: '500', requested: '501' });
    const page = await t.promotionalCredits.listPromotionalCredits({ pageSize: 0, pageToken: '', customerId: { is: 'c' } });
    expect(page.promotionalCredits).to.have.length(1);
  });

  it('answers balances read at once (in one statement) as it answers them one by one: currencies, held, other tenants', async () => {
    const pc = t.promotionalCredits;
    const other = await newTenant(t.server.dataSource);
    const stranger = promotionalCredits(t.server.address, other.rwKey);
    try {
      for (const [customerId, amount] of [['m-1', 100n], ['m-2', 7n], ['m-3', 2n ** 60n]] as const) {
        await pc.addPromotionalCredits({ ...base, customerId, amount });
        await pc.addPromotionalCredits({ ...base, customerId, amount: amount + 1n, currencyCode: 'JPY' });
      }
      await pc.addPromotionalCredits({ ...base, customerId: 'm-1', amount: 3n, currencyCode: 'BHD' });
      await pc.holdPromotionalCredits({ ...base, customerId: 'm-1', amount: 40n, expireTime: new Date(Date.now() + 3_600_000) });
      await stranger.addPromotionalCredits({ ...base, customerId: 'm-2', amount: 11n });
      const reads = [
        () => pc.getCustomerBalance({ customerId: 'm-1' }),
        () => pc.getCustomerBalance({ customerId: 'm-2' }),
        () => pc.getCustomerBalance({ customerId: 'm-3' }),
        () => pc.getCustomerBalance({ customerId: 'nobody' }),
        () => stranger.getCustomerBalance({ customerId: 'm-1' }),
        () => stranger.getCustomerBalance({ customerId: 'm-2' }),
      ];
      const sequential = [];
      for (const read of reads) sequential.push(await read());
      expect(sequential[0]!.balance!.balances.map((b) => [b.currencyCode, b.amount, b.held, b.available])).to.deep.equal([
        ['BHD', 3n, 0n, 3n],
        ['JPY', 101n, 0n, 101n],
        ['USD', 100n, 40n, 60n],
      ]);
      expect(sequential[2]!.balance!.balances[0]!.amount).to.equal(2n ** 60n + 1n);
      expect(sequential[3]!.balance!.balances).to.deep.equal([]);
      expect(sequential[4]!.balance!.balances).to.deep.equal([]);
      expect(sequential[5]!.balance!.balances.map((b) => b.amount)).to.deep.equal([11n]);
      for (let round = 0; round < 3; round++) {
        expect(await Promise.all([...reads, ...reads, ...reads].map((read) => read()))).to.deep.equal([...sequential, ...sequential, ...sequential]);
      }
    } finally {
      stranger.close();
    }
  });

  it('lists every bad field at once', async () => {
    const err = await expectError(
      t.promotionalCredits.addPromotionalCredits({ customerId: 'bad id!', amount: 0n, currencyCode: 'usd', description: '', creditType: 42 as CreditType, reference: 'x'.repeat(501) }),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(err.fields).sort()).to.deep.equal(['amount', 'credit_type', 'currency_code', 'customer_id', 'description', 'reference']);
  });
});
