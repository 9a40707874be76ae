import { expect } from 'chai';
import { currencyBalance, ledgerProblemsOf } from '../support/ledger';
import { CreditType, PromotionalCreditType, type PromotionalCredit } from '../../gen/credits/v1/promotional_credit_service';
import { promotionalCredits } from '../support/server';
import { newTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

const base = { currencyCode: '', description: 'goodwill', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };
const { PROMOTIONAL_CREDIT_TYPE_INCREMENT: INCREMENT, PROMOTIONAL_CREDIT_TYPE_DECREMENT: DECREMENT } = PromotionalCreditType;

describe('PromotionalCreditService balance changes', () => {
  const t = useTenantClients();
  afterEach(async function () {
    // Whatever a test did through the API, the tenant's ledger must be sound.
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  /** Every entry of one customer, oldest first. */
  async function entriesOf(customerId: string): Promise<PromotionalCredit[]> {
    const page = await t.promotionalCredits.listPromotionalCredits({ pageSize: 100, pageToken: '', customerId: { is: customerId } });
    return page.promotionalCredits.reverse();
  }

  async function balanceRow(customerId: string, currencyCode = 'USD'): Promise<{ amount: string; update_time: Date } | undefined> {
    const rows: Array<{ amount: string; update_time: Date }> = await t.server.dataSource.query(
      `SELECT amount::text AS amount, update_time FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2 AND currency_code = $3`,
      [t.tenant.id, customerId, currencyCode],
    );
    return rows[0];
  }

  describe('AddPromotionalCredits', () => {
    it('adds by amount in minor units and answers every field of the entry', async () => {
      const before = Date.now();
      const res = await t.promotionalCredits.addPromotionalCredits({
        ...base,
        customerId: 'cust.1@x:y-z_',
        amount: 1234n,
        description: 'welcome bonus ✓',
        creditType: CreditType.CREDIT_TYPE_LOYALTY_CREDITS,
        reference: 'order-9',
      });
      const entry = res.promotionalCredit!;
      expect(entry.id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(entry).to.deep.include({
        customerId: 'cust.1@x:y-z_',
        type: INCREMENT,
        amount: 1234n,
        amountDecimal: '12.34',
        currencyCode: 'USD',
        description: 'welcome bonus ✓',
        creditType: CreditType.CREDIT_TYPE_LOYALTY_CREDITS,
        reference: 'order-9',
        closingBalance: 1234n,
        doneBy: 'rw-key',
      });
      expect(entry.createTime!.getTime()).to.be.within(before - 5_000, Date.now() + 5_000);
      expect(res.balance).to.deep.equal({ customerId: 'cust.1@x:y-z_', balances: [currencyBalance('USD', 1234n, '12.34')] });
    });

    it('records the name of the key that wrote the entry as done_by', async () => {
      const writeOnly = promotionalCredits(t.server.address, t.tenant.writeKey);
      try {
        const res = await writeOnly.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n });
        expect(res.promotionalCredit!.doneBy).to.equal('write-key');
      } finally {
        writeOnly.close();
      }
    });

    it('adds by amount_decimal in the currency of the request', async () => {
      const cases: Array<[currency: string, decimal: string, minor: bigint, formatted: string]> = [
        ['USD', '10.5', 1050n, '10.50'],
        ['USD', '7', 700n, '7.00'],
        ['USD', '0.01', 1n, '0.01'],
        ['JPY', '1050', 1050n, '1050'],
        ['BHD', '1.234', 1234n, '1.234'],
        ['BHD', '0.5', 500n, '0.500'],
        ['CLF', '1.2345', 12345n, '1.2345'],
      ];
      for (const [currencyCode, amountDecimal, minor, formatted] of cases) {
        const customerId = `dec-${currencyCode}-${amountDecimal}`;
        const res = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, currencyCode, amountDecimal });
        expect(res.promotionalCredit!, `${amountDecimal} ${currencyCode}`).to.deep.include({ amount: minor, amountDecimal: formatted, currencyCode });
        expect(res.balance!.balances).to.deep.equal([currencyBalance(currencyCode, minor, formatted)]);
      }
    });

    it('uses the tenant default currency when currency_code is empty', async () => {
      const jpyTenant = await newTenant(t.server.dataSource, { currency: 'JPY', multiCurrency: false });
      const jpy = promotionalCredits(t.server.address, jpyTenant.rwKey);
      try {
        const res = await jpy.addPromotionalCredits({ ...base, customerId: 'c', amountDecimal: '500' });
        expect(res.promotionalCredit!).to.deep.include({ currencyCode: 'JPY', amount: 500n, amountDecimal: '500' });
        // Naming the default explicitly is fine for a single-currency t.tenant.
        const named = await jpy.addPromotionalCredits({ ...base, customerId: 'c', amount: 5n, currencyCode: 'JPY' });
        expect(named.promotionalCredit!.closingBalance).to.equal(505n);
      } finally {
        jpy.close();
      }
    });

    it('keeps one balance per currency, each with its own closing balances', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'multi', amount: 100n });
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'multi', amount: 2000n, currencyCode: 'JPY' });
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'multi', amount: 3n, currencyCode: 'BHD' });
      const res = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'multi', amount: 50n, currencyCode: 'EUR' });
      expect(res.promotionalCredit!.closingBalance).to.equal(50n);
      const expected = [
        currencyBalance('BHD', 3n, '0.003'),
        currencyBalance('EUR', 50n, '0.50'),
        currencyBalance('JPY', 2000n, '2000'),
        currencyBalance('USD', 100n, '1.00'),
      ];
      expect(res.balance!.balances).to.deep.equal(expected);
      const deducted = await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'multi', amount: 500n, currencyCode: 'JPY' });
      expect(deducted.promotionalCredit!.closingBalance).to.equal(1500n);
      expect((await t.promotionalCredits.getCustomerBalance({ customerId: 'multi' })).balance!.balances).to.deep.equal([
        expected[0],
        expected[1],
        currencyBalance('JPY', 1500n, '1500'),
        expected[3],
      ]);
    });

    it('accepts the largest int64 amount', async () => {
      const res = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'max', amount: 9_223_372_036_854_775_807n });
      expect(res.promotionalCredit!.closingBalance).to.equal(9_223_372_036_854_775_807n);
      expect(res.promotionalCredit!.amountDecimal).to.equal('92233720368547758.07');
    });
  });

  describe('DeductPromotionalCredits', () => {
    it('deducts an amount and records a DECREMENT with the closing balance', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'd', amount: 1000n });
      const res = await t.promotionalCredits.deductPromotionalCredits({
        ...base,
        customerId: 'd',
        amount: 300n,
        description: 'used at checkout',
        creditType: CreditType.CREDIT_TYPE_REFERRAL_REWARDS,
        reference: 'inv-1',
      });
      expect(res.promotionalCredit!).to.deep.include({
        type: DECREMENT,
        amount: 300n,
        amountDecimal: '3.00',
        closingBalance: 700n,
        description: 'used at checkout',
        creditType: CreditType.CREDIT_TYPE_REFERRAL_REWARDS,
        reference: 'inv-1',
        doneBy: 'rw-key',
      });
      expect(res.balance!.balances).to.deep.equal([currencyBalance('USD', 700n, '7.00')]);
      const byDecimal = await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'd', amountDecimal: '6.99' });
      expect(byDecimal.promotionalCredit!).to.deep.include({ amount: 699n, closingBalance: 1n });
      // Deducting exactly the balance is allowed and leaves a zero balance that is still listed.
      const last = await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'd', amount: 1n });
      expect(last.balance!.balances).to.deep.equal([currencyBalance('USD', 0n, '0.00')]);
    });

    it('deducts the whole balance when no amount is given', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'all', amount: 4321n, currencyCode: 'BHD' });
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'all', amount: 99n });
      const res = await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'all', currencyCode: 'BHD', description: 'expired' });
      expect(res.promotionalCredit!).to.deep.include({ type: DECREMENT, amount: 4321n, amountDecimal: '4.321', currencyCode: 'BHD', closingBalance: 0n });
      expect(res.balance!.balances).to.deep.equal([
        currencyBalance('BHD', 0n, '0.000'),
        currencyBalance('USD', 99n, '0.99'),
      ]);
    });

    it('writes nothing when the whole balance is asked for and it is zero', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'z', amount: 10n });
      await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'z' });
      const entries = (await entriesOf('z')).length;
      const row = await balanceRow('z');
      const res = await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'z' });
      expect(res.promotionalCredit).to.equal(undefined);
      expect(res.balance!.balances).to.deep.equal([currencyBalance('USD', 0n, '0.00')]);
      expect(await entriesOf('z')).to.have.length(entries);
      expect(await balanceRow('z')).to.deep.equal(row);
    });

    it('writes nothing for a whole-balance deduct of a customer never seen', async () => {
      const res = await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'ghost' });
      expect(res.promotionalCredit).to.equal(undefined);
      expect(res.balance).to.deep.equal({ customerId: 'ghost', balances: [] });
      expect(await balanceRow('ghost')).to.equal(undefined);
    });
  });

  describe('SetPromotionalCredits', () => {
    it('sets a balance up with one INCREMENT for the difference', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 's', amount: 100n });
      const res = await t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 's', amountDecimal: '2.50', description: 'correction' });
      expect(res.promotionalCredit!).to.deep.include({ type: INCREMENT, amount: 150n, closingBalance: 250n, description: 'correction' });
      expect(res.balance!.balances).to.deep.equal([currencyBalance('USD', 250n, '2.50')]);
    });

    it('sets a balance down with one DECREMENT for the difference, down to zero', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 's', amount: 1000n, currencyCode: 'JPY' });
      const down = await t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 's', amount: 400n, currencyCode: 'JPY' });
      expect(down.promotionalCredit!).to.deep.include({ type: DECREMENT, amount: 600n, closingBalance: 400n, currencyCode: 'JPY' });
      const zero = await t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 's', amount: 0n, currencyCode: 'JPY' });
      expect(zero.promotionalCredit!).to.deep.include({ type: DECREMENT, amount: 400n, closingBalance: 0n });
    });

    it('creates the balance of a customer never seen', async () => {
      const res = await t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 'new', amount: 42n });
      expect(res.promotionalCredit!).to.deep.include({ type: INCREMENT, amount: 42n, closingBalance: 42n });
    });

    it('writes nothing when the balance already has the value', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'same', amount: 300n });
      const entries = (await entriesOf('same')).length;
      const row = await balanceRow('same');
      const res = await t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 'same', amountDecimal: '3.00' });
      expect(res.promotionalCredit).to.equal(undefined);
      expect(res.balance!.balances).to.deep.equal([currencyBalance('USD', 300n, '3.00')]);
      expect(await entriesOf('same')).to.have.length(entries);
      expect(await balanceRow('same'), 'balance row untouched').to.deep.equal(row);
    });

    it('writes nothing when setting zero for a customer never seen', async () => {
      const res = await t.promotionalCredits.setPromotionalCredits({ ...base, customerId: 'nobody', amount: 0n });
      expect(res.promotionalCredit).to.equal(undefined);
      expect(res.balance).to.deep.equal({ customerId: 'nobody', balances: [] });
      expect(await balanceRow('nobody')).to.equal(undefined);
    });
  });

  describe('GetPromotionalCredit and GetCustomerBalance', () => {
    it('gets an entry by id exactly as it was answered when written, in any letter case', async () => {
      const written = (await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'g', amount: 77n, reference: 'r' })).promotionalCredit!;
      const got = await t.promotionalCredits.getPromotionalCredit({ id: written.id });
      expect(got.promotionalCredit).to.deep.equal(written);
      const upper = await t.promotionalCredits.getPromotionalCredit({ id: written.id.toUpperCase() });
      expect(upper.promotionalCredit).to.deep.equal(written);
    });

    it('reads with a read-only key', async () => {
      const written = (await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'r', amount: 5n })).promotionalCredit!;
      const reader = promotionalCredits(t.server.address, t.tenant.readKey);
      try {
        expect((await reader.getPromotionalCredit({ id: written.id })).promotionalCredit).to.deep.equal(written);
        expect((await reader.getCustomerBalance({ customerId: 'r' })).balance!.balances).to.have.length(1);
        expect((await reader.listPromotionalCredits({ pageSize: 0, pageToken: '' })).promotionalCredits).to.have.length(1);
      } finally {
        reader.close();
      }
    });

    it('answers empty balances for a customer never seen', async () => {
      const res = await t.promotionalCredits.getCustomerBalance({ customerId: 'never-seen' });
      expect(res.balance).to.deep.equal({ customerId: 'never-seen', balances: [] });
    });

    it('lists the entries of a customer, newest first', async () => {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'l', amount: 10n });
      await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'l', amount: 4n });
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'l', amount: 1n });
      const page = await t.promotionalCredits.listPromotionalCredits({ pageSize: 0, pageToken: '' });
      expect(page.promotionalCredits.map((e) => [e.type, e.amount, e.closingBalance])).to.deep.equal([
        [INCREMENT, 1n, 7n],
        [DECREMENT, 4n, 6n],
        [INCREMENT, 10n, 10n],
      ]);
      expect(page.nextPageToken).to.equal('');
    });
  });
});
