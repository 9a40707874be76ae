import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { currencyBalance } from '../support/ledger';
import { CreditType, PromotionalCreditType } from '../../gen/credits/v1/promotional_credit_service';
import { expectError } from '../support/status';
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

  it('lists every bad field at once', async () => {
    const err = await expectError(
      t.promotionalCredits.addPromotionalCredits({ customerId: 'bad id!', amount: 0n, currencyCode: 'usd', description: '', creditType: 42 as CreditType, reference: 'x'.repeat(501) }),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(err.fields).sort()).to.deep.equal(['amount', 'credit_type', 'currency_code', 'customer_id', 'description', 'reference']);
  });
});
