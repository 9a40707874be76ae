import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { PlainRunner } from '../../src/db/unit-of-work';
import { LEDGER_WRITES } from '../../src/promotional-credits/promotional-credits.service';
import type { EntryDraft, LedgerWrite, LedgerWriteOutcome } from '../../src/promotional-credits/promotional-credit.repository';
import type { EntryType } from '../../src/promotional-credits/promotional-credit.entity';
import { openTestDataSource } from '../support/database';
import { ledgerWrite, ledgerProblemsOf } from '../support/ledger';
import { newTenant } from '../support/tenant';

const INT64_MAX = 9223372036854775807n;

/** Ledger writes group-committed the way keyless calls' are (PlainRunner.submit), with `maxGroups` groups at once. */
class LedgerBatcher {
  private readonly runner: PlainRunner;

  constructor(dataSource: DataSource, options: { maxBatches?: number } = {}) {
    this.runner = new PlainRunner(dataSource, options.maxBatches === undefined ? {} : { maxGroups: options.maxBatches });
  }

  apply(write: LedgerWrite): Promise<LedgerWriteOutcome> {
    return this.runner.submit(LEDGER_WRITES, write);
  }
}

/**
 * The group commit behind keyless Add/Deduct calls, against the real
 * database: writes that arrive together share one statement and one commit,
 * yet each keeps its own guard, entry and outcome.
 */
describe('ledger batcher (group commit of balance changes)', () => {
  let dataSource: DataSource;

  before(async () => {
    dataSource = await openTestDataSource(8);
  });
  after(async () => {
    await dataSource.destroy();
  });

  function write(tenantId: string, customerId: string, type: EntryType, amount: bigint, extra: Partial<EntryDraft> = {}): LedgerWrite {
    return ledgerWrite(tenantId, customerId, type, amount, { extra, doneBy: 'batcher-test', withOtherCurrencies: true });
  }

  const closing = (o: LedgerWriteOutcome) => o.written?.entry.closingBalance;

  it('applies writes that arrive in one turn in ONE transaction, chaining each balance in arrival order', async () => {
    const tenant = await newTenant(dataSource);
    const batcher = new LedgerBatcher(dataSource, { maxBatches: 1 });
    // Interleaved on purpose: the batch is sorted by balance, stably.
    const writes = [1n, 2n, 3n].flatMap((amount) => ['c9', 'c1', 'c5'].map((c) => write(tenant.id, c, 'INCREMENT', amount)));
    const outcomes = await Promise.all(writes.map((w) => batcher.apply(w)));

    expect(outcomes.map(closing)).to.deep.equal([1n, 1n, 1n, 3n, 3n, 3n, 6n, 6n, 6n]);
    const rows: Array<{ xid: string; customer_id: string; amount: string; closing_balance: string }> = await dataSource.query(
      `SELECT xmin::text AS xid, customer_id, amount::text, closing_balance::text FROM promotional_credits WHERE tenant_id = $1 ORDER BY seq`,
      [tenant.id],
    );
    expect(new Set(rows.map((r) => r.xid)).size, 'one transaction wrote every entry').to.equal(1);
    expect(rows.filter((r) => r.customer_id === 'c5').map((r) => [r.amount, r.closing_balance])).to.deep.equal([
      ['1', '1'],
      ['2', '3'],
      ['3', '6'],
    ]);
    expect(await ledgerProblemsOf(dataSource.manager, tenant.id)).to.deep.equal([]);
  });

  it('fails a deduct the balance does not cover alone, and the writes after it on that balance still apply', async () => {
    const tenant = await newTenant(dataSource);
    const batcher = new LedgerBatcher(dataSource, { maxBatches: 1 });
    const outcomes = await Promise.all(
      [
        write(tenant.id, 'c1', 'INCREMENT', 5n),
        write(tenant.id, 'c1', 'DECREMENT', 3n),
        write(tenant.id, 'c1', 'DECREMENT', 3n),
        write(tenant.id, 'c1', 'DECREMENT', 2n),
        write(tenant.id, 'c2', 'DECREMENT', 1n),
      ].map((w) => batcher.apply(w)),
    );
    expect(outcomes.map(closing)).to.deep.equal([5n, 2n, undefined, 0n, undefined]);
    expect(outcomes[2]).to.deep.equal({ written: undefined, refused: 'INSUFFICIENT_BALANCE', balance: 2n, held: 0n, customerId: 'c1', currencyCode: 'USD' });
    expect(outcomes[4], 'a customer never seen has a zero balance').to.deep.equal({ written: undefined, refused: 'INSUFFICIENT_BALANCE', balance: 0n, held: 0n, customerId: 'c2', currencyCode: 'USD' });
    const [{ n }] = await dataSource.query(`SELECT count(*)::int AS n FROM promotional_credits WHERE tenant_id = $1`, [tenant.id]);
    expect(n).to.equal(3);
  });

  it('refuses an add past the int64 maximum alone, answering the balance as it stands', async () => {
    const tenant = await newTenant(dataSource);
    const batcher = new LedgerBatcher(dataSource, { maxBatches: 1 });
    const outcomes = await Promise.all(
      [
        write(tenant.id, 'rich', 'INCREMENT', INT64_MAX - 1n),
        write(tenant.id, 'rich', 'INCREMENT', 2n),
        write(tenant.id, 'rich', 'INCREMENT', 1n),
      ].map((w) => batcher.apply(w)),
    );
    expect(outcomes.map(closing)).to.deep.equal([INT64_MAX - 1n, undefined, INT64_MAX]);
    expect(outcomes[1]).to.deep.equal({ written: undefined, refused: 'BALANCE_LIMIT_EXCEEDED', balance: INT64_MAX - 1n, held: 0n, customerId: 'rich', currencyCode: 'USD' });
  });

  it('answers the balances in the other currencies after each write when asked, and only its own otherwise', async () => {
    const tenant = await newTenant(dataSource);
    const batcher = new LedgerBatcher(dataSource, { maxBatches: 1 });
    const [usd, eur, single] = await Promise.all([
      batcher.apply(write(tenant.id, 'c1', 'INCREMENT', 100n)),
      batcher.apply(write(tenant.id, 'c1', 'INCREMENT', 7n, { currencyCode: 'EUR' })),
      batcher.apply({ ...write(tenant.id, 'c1', 'INCREMENT', 1n), withOtherCurrencies: false }),
    ]);
    // Sorted by balance key, EUR is applied first, then the two USD writes.
    expect(eur!.written!.balances).to.deep.equal([{ currencyCode: 'EUR', amount: 7n, held: 0n }]);
    expect(usd!.written!.balances).to.deep.equal([
      { currencyCode: 'EUR', amount: 7n, held: 0n },
      { currencyCode: 'USD', amount: 100n, held: 0n },
    ]);
    expect(single!.written!.balances).to.deep.equal([{ currencyCode: 'USD', amount: 101n, held: 0n }]);
  });

  it('runs the writes of a batch that failed one by one, so that only the bad write fails', async () => {
    const tenant = await newTenant(dataSource);
    const batcher = new LedgerBatcher(dataSource, { maxBatches: 1 });
    // PostgreSQL text cannot hold NUL: this one write makes its statement fail.
    const results = await Promise.allSettled([
      batcher.apply(write(tenant.id, 'c1', 'INCREMENT', 10n)),
      batcher.apply(write(tenant.id, 'c2', 'INCREMENT', 10n, { description: 'bad \u0000 byte' })),
      batcher.apply(write(tenant.id, 'c3', 'INCREMENT', 10n)),
    ]);
    expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
    const rows: Array<{ customer_id: string }> = await dataSource.query(
      `SELECT customer_id FROM promotional_credits WHERE tenant_id = $1 ORDER BY customer_id`,
      [tenant.id],
    );
    expect(rows.map((r) => r.customer_id)).to.deep.equal(['c1', 'c3']);
  });

  it('keeps every balance equal to its entries when two batchers race on the same few balances', async () => {
    const tenant = await newTenant(dataSource);
    const batchers = [new LedgerBatcher(dataSource), new LedgerBatcher(dataSource)];
    const customers = ['a', 'b', 'c', 'd', 'e'];
    const writes: LedgerWrite[] = [];
    for (let i = 0; i < 400; i++) {
      const customer = customers[(i * 7) % customers.length]!;
      writes.push(write(tenant.id, customer, i % 3 === 2 ? 'DECREMENT' : 'INCREMENT', BigInt(1 + (i % 5))));
    }
    // Reverse order on the second batcher: its batches meet the first one's rows the other way round.
    const outcomes = await Promise.all(writes.map((w, i) => batchers[i % 2]!.apply(i % 2 ? w : writes[writes.length - 1 - i]!)));
    expect(outcomes.filter((o) => o.written).length).to.be.greaterThan(200);
    expect(await ledgerProblemsOf(dataSource.manager, tenant.id)).to.deep.equal([]);
    const [{ total }] = await dataSource.query(
      `SELECT coalesce(sum(CASE type WHEN 'INCREMENT' THEN amount ELSE -amount END), 0)::text AS total FROM promotional_credits WHERE tenant_id = $1`,
      [tenant.id],
    );
    const [{ balances }] = await dataSource.query(
      `SELECT coalesce(sum(amount), 0)::text AS balances FROM promotional_credit_balances WHERE tenant_id = $1`,
      [tenant.id],
    );
    expect(balances).to.equal(total);
  });
});
