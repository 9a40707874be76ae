import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { HoldStatus, Origin, type PromotionalCredit } from '../../gen/credits/v1/promotional_credit_service';
import { expectChained, ledgerOf, ledgerProblemsOf } from '../support/ledger';
import { walkPages } from '../support/pages';
import { promotionalCredits } from '../support/server';
import { mentions, recordStatements } from '../support/statements';
import { decodeError, expectError } from '../support/status';
import { newTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

const base = { description: 'checkout', currencyCode: 'USD' };
const inMs = (ms: number) => new Date(Date.now() + ms);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('holds: credits reserved during a checkout, captured or released', () => {
  const t = useTenantClients({ replica: true });
  const balanceOf = async (customerId: string) => (await t.promotionalCredits.getCustomerBalance({ customerId })).balance!.balances.find((b) => b.currencyCode === 'USD')!;

  it('holds from the available amount, captures part of it in one entry and releases the rest', async () => {
    const pc = t.promotionalCredits;
    const customerId = 'shopper';
    await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
    const hold = await pc.holdPromotionalCredits({ ...base, customerId, amount: 60n, reference: 'checkout-1', metadata: { cart: 'c-1' } });
    expect(hold.hold!).to.deep.include({ customerId, amount: 60n, capturedAmount: 0n, status: HoldStatus.HOLD_STATUS_ACTIVE, reference: 'checkout-1', doneBy: 'rw-key' });
    const expires = hold.hold!.expireTime!.getTime() - hold.hold!.createTime!.getTime();
    expect(expires, 'default: 15 minutes').to.be.within(15 * 60_000 - 1000, 15 * 60_000 + 1000);
    expect(hold.balance!.balances[0]).to.deep.include({ amount: 100n, held: 60n, available: 40n, availableDecimal: '0.40' });
    // Deduct works on what is available.
    await expectError(pc.deductPromotionalCredits({ ...base, customerId, amount: 41n }), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');
    const all = await pc.deductPromotionalCredits({ ...base, customerId });
    expect(all.promotionalCredit!.amount, 'a whole deduct takes the available amount').to.equal(40n);
    await expectError(pc.setPromotionalCredits({ ...base, customerId, amount: 59n }), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');

    const capture = await pc.capturePromotionalCreditHold({ holdId: hold.hold!.id, amount: 45n });
    expect(capture.hold!).to.deep.include({ status: HoldStatus.HOLD_STATUS_CAPTURED, capturedAmount: 45n });
    expect(capture.promotionalCredit!).to.deep.include({ origin: Origin.ORIGIN_HOLD_CAPTURE, amount: 45n, closingBalance: 15n, reference: 'checkout-1', metadata: { cart: 'c-1' } });
    expect(capture.balance!.balances[0]).to.deep.include({ amount: 15n, held: 0n, available: 15n });
    const again = await expectError(pc.capturePromotionalCreditHold({ holdId: hold.hold!.id }), status.FAILED_PRECONDITION, 'HOLD_NOT_ACTIVE');
    expect(again.metadata).to.deep.include({ status: 'CAPTURED' });
    await expectError(pc.releasePromotionalCreditHold({ holdId: hold.hold!.id }), status.FAILED_PRECONDITION, 'HOLD_NOT_ACTIVE');

    const second = await pc.holdPromotionalCredits({ ...base, customerId, amount: 15n });
    const released = await pc.releasePromotionalCreditHold({ holdId: second.hold!.id });
    expect(released.hold!.status).to.equal(HoldStatus.HOLD_STATUS_RELEASED);
    expect(released.balance!.balances[0]).to.deep.include({ amount: 15n, held: 0n, available: 15n });
    await expectError(pc.capturePromotionalCreditHold({ holdId: second.hold!.id }), status.FAILED_PRECONDITION, 'HOLD_NOT_ACTIVE');
    await expectError(pc.capturePromotionalCreditHold({ holdId: randomUUID() }), status.NOT_FOUND, 'HOLD_NOT_FOUND');
    await expectError(pc.capturePromotionalCreditHold({ holdId: hold.hold!.id, amount: 0n }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    await expectError(pc.holdPromotionalCredits({ ...base, customerId, amount: 16n }), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');
    await expectError(pc.holdPromotionalCredits({ ...base, customerId, amount: 1n, expireTime: inMs(8 * 86_400_000) }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');

    const listed = await walkPages((pageToken) => pc.listPromotionalCreditHolds({ customerId, pageSize: 1, pageToken }), (p) => p.holds);
    expect(listed.map((h) => [h.id, h.status])).to.deep.equal([
      [second.hold!.id, HoldStatus.HOLD_STATUS_RELEASED],
      [hold.hold!.id, HoldStatus.HOLD_STATUS_CAPTURED],
    ]);
    expect((await pc.listPromotionalCreditHolds({ status: HoldStatus.HOLD_STATUS_CAPTURED })).holds.map((h) => h.id)).to.deep.equal([hold.hold!.id]);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('a capture larger than the hold is refused; a hold past its expire_time reads EXPIRED at once and frees its credits', async function () {
    this.timeout(20_000);
    const pc = t.promotionalCredits;
    const customerId = 'slow';
    await pc.addPromotionalCredits({ ...base, customerId, amount: 50n });
    const hold = await pc.holdPromotionalCredits({ ...base, customerId, amount: 50n, expireTime: inMs(900) });
    const over = await expectError(pc.capturePromotionalCreditHold({ holdId: hold.hold!.id, amount: 51n }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(over.fields)).to.deep.equal(['amount']);
    // Named as the caller gave it.
    const overDecimal = await expectError(pc.capturePromotionalCreditHold({ holdId: hold.hold!.id, amountDecimal: '0.51' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(Object.keys(overDecimal.fields)).to.deep.equal(['amount_decimal']);
    // A bad amount is listed with the other bad fields, before the hold is looked up.
    const bad = await expectError(
      pc.capturePromotionalCreditHold({ holdId: 'nope', amount: -5n, description: 'x'.repeat(300) }),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(bad.fields).sort()).to.deep.equal(['amount', 'description', 'hold_id']);
    await expectError(pc.capturePromotionalCreditHold({ holdId: randomUUID(), amount: -5n }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    // So is a decimal amount's form (its decimal places need the hold's currency).
    const badDecimal = await expectError(
      pc.capturePromotionalCreditHold({ holdId: 'nope', amountDecimal: '-1', description: 'x'.repeat(300) }),
      status.INVALID_ARGUMENT,
      'VALIDATION_FAILED',
    );
    expect(Object.keys(badDecimal.fields).sort()).to.deep.equal(['amount_decimal', 'description', 'hold_id']);
    await expectError(pc.capturePromotionalCreditHold({ holdId: randomUUID(), amountDecimal: '-1' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect((await balanceOf(customerId)).available).to.equal(0n);
    await sleep(1000);
    const read = await pc.getPromotionalCreditHold({ holdId: hold.hold!.id });
    expect(read.hold!.status).to.equal(HoldStatus.HOLD_STATUS_EXPIRED);
    expect(read.hold!.updateTime!.getTime()).to.equal(hold.hold!.expireTime!.getTime());
    expect(await balanceOf(customerId)).to.deep.include({ amount: 50n, held: 0n, available: 50n });
    const err = await expectError(pc.capturePromotionalCreditHold({ holdId: hold.hold!.id }), status.FAILED_PRECONDITION, 'HOLD_NOT_ACTIVE');
    expect(err.metadata).to.deep.include({ status: 'EXPIRED' });
    expect((await pc.deductPromotionalCredits({ ...base, customerId, amount: 50n })).promotionalCredit!.closingBalance).to.equal(0n);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('keeps credits held when their lot expires capturable; released later, they expire then', async function () {
    this.timeout(20_000);
    const pc = t.promotionalCredits;
    const customerId = 'held-over';
    const lot = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: inMs(900) });
    await pc.addPromotionalCredits({ ...base, customerId, amount: 20n });
    const capturable = await pc.holdPromotionalCredits({ ...base, customerId, amount: 30n });
    const releasable = await pc.holdPromotionalCredits({ ...base, customerId, amount: 40n });
    await sleep(1100);
    // What the holds need of the expired lot (70) stays; the other 30 of it expired.
    expect(await balanceOf(customerId)).to.deep.include({ amount: 90n, held: 70n, available: 20n });
    const capture = await pc.capturePromotionalCreditHold({ holdId: capturable.hold!.id });
    expect(capture.promotionalCredit!.allocations.map((a) => [a.lotId, a.amount])).to.deep.equal([[lot.promotionalCredit!.id, 30n]]);
    const release = await pc.releasePromotionalCreditHold({ holdId: releasable.hold!.id });
    expect(release.balance!.balances[0]).to.deep.include({ amount: 20n, held: 0n, available: 20n });
    const ledger = await ledgerOf(pc, customerId);
    expect(ledger.filter((e) => e.origin === Origin.ORIGIN_EXPIRATION).map((e) => e.amount)).to.deep.equal([30n, 40n]);
    expectChained(ledger);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  describe('credits of a lot that expires under a hold', () => {
    const allocationsOf = (entry: PromotionalCredit | undefined) => entry!.allocations.map((a) => [a.lotId, a.amount]);

    it('keeps them for that hold alone: a deduction draws unexpired credits, and the kept ones expire when the hold is released', async function () {
      this.timeout(20_000);
      const pc = t.promotionalCredits;
      const customerId = 'kept-not-spent';
      await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: inMs(900) });
      const lasting = (await pc.addPromotionalCredits({ ...base, customerId, amount: 100n })).promotionalCredit!;
      const { hold } = await pc.holdPromotionalCredits({ ...base, customerId, amount: 100n });
      await sleep(1100);
      expect(await balanceOf(customerId)).to.deep.include({ amount: 200n, held: 100n, available: 100n });
      const deducted = await pc.deductPromotionalCredits({ ...base, customerId, amount: 100n });
      expect(allocationsOf(deducted.promotionalCredit), 'drawn from the lot that has not expired').to.deep.equal([[lasting.id, 100n]]);
      const released = await pc.releasePromotionalCreditHold({ holdId: hold!.id });
      expect(released.balance!.balances[0]).to.deep.include({ amount: 0n, held: 0n });
      const ledger = await ledgerOf(pc, customerId);
      expect(ledger.at(-1)).to.deep.include({ origin: Origin.ORIGIN_EXPIRATION, amount: 100n, closingBalance: 0n });
      expectChained(ledger);
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it('keeps none of them for a hold made after the lot expired', async function () {
      this.timeout(20_000);
      const pc = t.promotionalCredits;
      const customerId = 'later-hold';
      await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: inMs(900) });
      const lasting = (await pc.addPromotionalCredits({ ...base, customerId, amount: 100n })).promotionalCredit!;
      const first = (await pc.holdPromotionalCredits({ ...base, customerId, amount: 100n })).hold!;
      await sleep(1100);
      const later = (await pc.holdPromotionalCredits({ ...base, customerId, amount: 100n })).hold!;
      // Released, the first hold's credits expire: the later hold holds the lasting lot's.
      const released = await pc.releasePromotionalCreditHold({ holdId: first.id });
      expect(released.balance!.balances[0]).to.deep.include({ amount: 100n, held: 100n });
      const captured = await pc.capturePromotionalCreditHold({ holdId: later.id });
      expect(allocationsOf(captured.promotionalCredit)).to.deep.equal([[lasting.id, 100n]]);
      expect(captured.balance!.balances[0]).to.deep.include({ amount: 0n, held: 0n });
      expectChained(await ledgerOf(pc, customerId));
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it('lets credits a reversal returns to the expired lot expire at once, whatever holds are active', async function () {
      this.timeout(20_000);
      const pc = t.promotionalCredits;
      const customerId = 'returned-after-expiry';
      const expiring = (await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: inMs(900) })).promotionalCredit!;
      const lasting = (await pc.addPromotionalCredits({ ...base, customerId, amount: 100n })).promotionalCredit!;
      const spent = (await pc.deductPromotionalCredits({ ...base, customerId, amount: 100n })).promotionalCredit!;
      expect(allocationsOf(spent)).to.deep.equal([[expiring.id, 100n]]);
      const { hold } = await pc.holdPromotionalCredits({ ...base, customerId, amount: 100n }); // of the lasting lot: the other is empty
      await sleep(1100);
      const reversal = await pc.reversePromotionalCredit({ id: spent.id, description: 'refund after expiry' });
      expect(reversal.balance!.balances[0]).to.deep.include({ amount: 100n, held: 100n });
      const ledger = await ledgerOf(pc, customerId);
      expect(ledger.slice(-2).map((e) => [e.origin, e.amount, e.closingBalance])).to.deep.equal([
        [Origin.ORIGIN_REVERSAL, 100n, 200n],
        [Origin.ORIGIN_EXPIRATION, 100n, 100n],
      ]);
      expect(allocationsOf(ledger.at(-1))).to.deep.equal([[expiring.id, 100n]]);
      const captured = await pc.capturePromotionalCreditHold({ holdId: hold!.id });
      expect(allocationsOf(captured.promotionalCredit)).to.deep.equal([[lasting.id, 100n]]);
      expect(captured.balance!.balances[0]).to.deep.include({ amount: 0n, held: 0n });
      expectChained(await ledgerOf(pc, customerId));
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });
  });

  it('refuses a Set below what holds keep with the Set message, not a deduction one', async () => {
    const pc = t.promotionalCredits;
    const customerId = 'set-under-hold';
    await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
    await pc.holdPromotionalCredits({ ...base, customerId, amount: 50n });
    const err = await expectError(pc.setPromotionalCredits({ ...base, customerId, amount: 10n }), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');
    expect(err.message).to.equal(`Cannot set the balance of customer ${customerId} below what active holds keep (0.50 USD).`);
    expect(err.metadata).to.deep.equal({ balance: '100', held: '50', available: '50', currency_code: 'USD' });
  });

  it('tells BALANCE_DEPLETED once: a hold that takes all that is available, not again when it is captured in full', async () => {
    const pc = t.promotionalCredits;
    const customerId = 'depleted-once';
    await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
    const { hold } = await pc.holdPromotionalCredits({ ...base, customerId, amount: 100n });
    await pc.capturePromotionalCreditHold({ holdId: hold!.id });
    const rows: Array<{ type: string }> = await t.server.dataSource.query(
      `SELECT type FROM events WHERE tenant_id = $1 AND customer_id = $2 ORDER BY xid, position`,
      [t.tenant.id, customerId],
    );
    expect(rows.map((r) => r.type)).to.deep.equal([
      'PROMOTIONAL_CREDIT_CREATED',
      'HOLD_CREATED',
      'BALANCE_DEPLETED',
      'PROMOTIONAL_CREDIT_CREATED',
      'HOLD_CAPTURED',
    ]);
  });

  it('captures, releases and reverses in ONE statement that reads the target with the write; only a decimal capture reads its hold first', async () => {
    const pc = t.promotionalCredits;
    const customerId = 'one-statement';
    await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
    const first = await pc.holdPromotionalCredits({ ...base, customerId, amount: 30n, reference: 'order-1', metadata: { cart: 'c-1' } });
    const second = await pc.holdPromotionalCredits({ ...base, customerId, amount: 20n });
    const third = await pc.holdPromotionalCredits({ ...base, customerId, amount: 10n });
    /**
     * The statements of one call that name its target (by its id, a
     * parameter) other than its write through the write path: reads of the
     * target; and its writes.
     */
    const statementsOf = async <T>(targetId: string, call: () => Promise<T>) => {
      const recorder = recordStatements(t.server.dataSource);
      try {
        const answer = await call();
        const isWrite = (sql: string) => /promotional_credit_apply\(/.test(sql);
        const reads = recorder.recorded.filter((s) => !isWrite(s.sql) && mentions(s, targetId)).map((s) => s.sql);
        const writes = recorder.recorded.filter((s) => isWrite(s.sql) && mentions(s, targetId)).map((s) => s.sql);
        return { answer, reads, writes };
      } finally {
        recorder.stop();
      }
    };

    const capture = await statementsOf(first.hold!.id, () => pc.capturePromotionalCreditHold({ holdId: first.hold!.id, amount: 25n }));
    expect(capture.reads, 'no read of the hold before the write').to.deep.equal([]);
    expect(capture.writes).to.have.length(1);
    // The entry takes the hold's description (none given), reference and metadata, and its balance.
    expect(capture.answer.promotionalCredit!).to.deep.include({
      customerId,
      currencyCode: 'USD',
      amount: 25n,
      closingBalance: 75n,
      description: 'checkout',
      reference: 'order-1',
      metadata: { cart: 'c-1' },
    });
    expect(capture.answer.balance!.balances).to.have.length(1);
    expect(capture.answer.balance!.balances[0]).to.deep.include({ currencyCode: 'USD', amount: 75n, held: 30n, available: 45n });

    const release = await statementsOf(second.hold!.id, () => pc.releasePromotionalCreditHold({ holdId: second.hold!.id }));
    expect(release.reads).to.deep.equal([]);
    expect(release.writes).to.have.length(1);
    expect(release.answer.balance!.balances[0]).to.deep.include({ currencyCode: 'USD', amount: 75n, held: 10n });

    const reversal = await statementsOf(capture.answer.promotionalCredit!.id, () =>
      pc.reversePromotionalCredit({ id: capture.answer.promotionalCredit!.id, description: 'refund' }),
    );
    expect(reversal.reads, 'no read of the entry before the write').to.deep.equal([]);
    expect(reversal.writes).to.have.length(1);
    expect(reversal.answer.promotionalCredit!).to.deep.include({ customerId, currencyCode: 'USD', amount: 25n, closingBalance: 100n });

    const decimal = await statementsOf(third.hold!.id, () => pc.capturePromotionalCreditHold({ holdId: third.hold!.id, amountDecimal: '0.04', description: 'part' }));
    expect(decimal.reads, 'its decimal places are the hold currency\'s').to.have.length(1);
    expect(decimal.writes).to.have.length(1);
    expect(decimal.answer.promotionalCredit!).to.deep.include({ amount: 4n, description: 'part', closingBalance: 96n });

    // Another tenant's hold and entry are not found, as unknown ids are, and stay as they were.
    const other = await newTenant(t.server.dataSource);
    const otherClient = promotionalCredits(t.server.address, other.rwKey);
    try {
      await otherClient.addPromotionalCredits({ ...base, customerId, amount: 10n });
      const theirs = await otherClient.holdPromotionalCredits({ ...base, customerId, amount: 5n });
      const theirEntry = (await otherClient.deductPromotionalCredits({ ...base, customerId, amount: 1n })).promotionalCredit!;
      await expectError(pc.capturePromotionalCreditHold({ holdId: theirs.hold!.id }), status.NOT_FOUND, 'HOLD_NOT_FOUND');
      await expectError(pc.releasePromotionalCreditHold({ holdId: theirs.hold!.id }), status.NOT_FOUND, 'HOLD_NOT_FOUND');
      await expectError(pc.reversePromotionalCredit({ id: theirEntry.id, description: 'x' }), status.NOT_FOUND, 'PROMOTIONAL_CREDIT_NOT_FOUND');
      await expectError(pc.reversePromotionalCredit({ id: randomUUID(), description: 'x' }), status.NOT_FOUND, 'PROMOTIONAL_CREDIT_NOT_FOUND');
      expect((await otherClient.getPromotionalCreditHold({ holdId: theirs.hold!.id })).hold!.status).to.equal(HoldStatus.HOLD_STATUS_ACTIVE);
      expect((await otherClient.getCustomerBalance({ customerId })).balance!.balances[0]).to.deep.include({ amount: 9n, held: 5n });
    } finally {
      otherClient.close();
    }
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('applies a write whose balance its target names in balance-key order among the others, so that concurrent statements cannot deadlock', async () => {
    const pc = t.promotionalCredits;
    for (const customerId of ['key-a', 'key-m', 'key-z']) await pc.addPromotionalCredits({ ...base, customerId, amount: 10n });
    const { hold } = await pc.holdPromotionalCredits({ ...base, customerId: 'key-m', amount: 5n });
    const item = (fields: Record<string, unknown>) =>
      Object.assign({ tenant_id: t.tenant.id, description: 'order', credit_type: 'GENERAL', done_by: 'test', with_others: false, validate_only: true }, fields);
    // As the API sends them: sorted by key, the capture (no key yet) first.
    const writes = [
      item({ op: 'CAPTURE', target_id: hold!.id }),
      item({ op: 'DEDUCT', customer_id: 'key-a', currency_code: 'USD', amount: '1' }),
      item({ op: 'DEDUCT', customer_id: 'key-z', currency_code: 'USD', amount: '1' }),
      item({ op: 'RELEASE', target_id: randomUUID() }),
    ];
    const rows: Array<{ item: number; customer_id: string | null; outcome: string; reason: string | null }> = await t.server.dataSource.query(
      `SELECT item, customer_id, outcome, reason FROM promotional_credit_apply($1::jsonb)`,
      [JSON.stringify(writes)],
    );
    expect(rows.map((r) => [r.item, r.customer_id, r.outcome, r.reason])).to.deep.equal([
      [2, 'key-a', 'written', null],
      [1, 'key-m', 'written', null],
      [3, 'key-z', 'written', null],
      // A target not found names no balance: nothing locked, refused.
      [4, null, 'refused', 'NOT_FOUND'],
    ]);
    expect((await pc.getPromotionalCreditHold({ holdId: hold!.id })).hold!.status, 'validate_only wrote nothing').to.equal(HoldStatus.HOLD_STATUS_ACTIVE);
  });

  it('answers the entry of a capture as the ledger holds it when credits of an expired lot expire right after it', async function () {
    this.timeout(20_000);
    const pc = t.promotionalCredits;
    const customerId = 'captured-then-expired';
    await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: inMs(900) });
    await pc.addPromotionalCredits({ ...base, customerId, amount: 20n });
    const capturable = await pc.holdPromotionalCredits({ ...base, customerId, amount: 30n });
    await pc.holdPromotionalCredits({ ...base, customerId, amount: 40n });
    await sleep(1100);
    // 90 (30 of the lot expired), 70 held. Capturing 10 draws them from the
    // expired lot (closing at 80); the rest of that hold is released, and of
    // the lot's 60 left only the 40 the other hold needs stay: 20 expire.
    const capture = await pc.capturePromotionalCreditHold({ holdId: capturable.hold!.id, amount: 10n });
    expect(capture.balance!.balances[0]).to.deep.include({ amount: 60n, held: 40n });
    const ledger = await ledgerOf(pc, customerId);
    expect(ledger.slice(-2).map((e) => [e.origin, e.amount, e.closingBalance])).to.deep.equal([
      [Origin.ORIGIN_HOLD_CAPTURE, 10n, 80n],
      [Origin.ORIGIN_EXPIRATION, 20n, 60n],
    ]);
    expect(capture.promotionalCredit, 'the answered entry').to.deep.equal(ledger.at(-2));
    expectChained(ledger);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('keeps available >= 0, active holds <= balance and the chain under 200 parallel holds, deducts, captures and releases on two servers', async function () {
    this.timeout(120_000);
    const customerId = 'hot-hold';
    const clients = [t.promotionalCredits, t.replica.promotionalCredits];
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 2000n });
    const holds: string[] = [];
    const answered: PromotionalCredit[] = [];
    const ops = Array.from({ length: 200 }, (_, i) => async () => {
      const pc = clients[i % 2]!;
      switch (i % 5) {
        case 0:
        case 1: {
          const h = await pc.holdPromotionalCredits({ ...base, customerId, amount: BigInt(10 + (i % 40)) });
          holds.push(h.hold!.id);
          expect(h.balance!.balances[0]!.available >= 0n).to.equal(true);
          return;
        }
        case 2:
          answered.push((await pc.deductPromotionalCredits({ ...base, customerId, amount: 15n })).promotionalCredit!);
          return;
        case 3: {
          const id = holds.shift();
          if (id) answered.push((await pc.capturePromotionalCreditHold({ holdId: id, amount: 5n })).promotionalCredit!);
          return;
        }
        default: {
          const id = holds.shift();
          if (id) await pc.releasePromotionalCreditHold({ holdId: id });
        }
      }
    });
    const results = await Promise.allSettled(ops.map((op) => op()));
    for (const r of results) {
      if (r.status === 'rejected') expect(['INSUFFICIENT_BALANCE', 'HOLD_NOT_ACTIVE']).to.include(decodeError(r.reason as ServiceError).reason);
    }
    const balance = await balanceOf(customerId);
    expect(balance.available >= 0n && balance.held <= balance.amount).to.equal(true);
    const active: Array<{ held: string }> = await t.server.dataSource.query(
      `SELECT coalesce(sum(amount), 0)::text AS held FROM promotional_credit_holds WHERE tenant_id = $1 AND status = 'ACTIVE'`,
      [t.tenant.id],
    );
    expect(BigInt(active[0]!.held)).to.equal(balance.held);
    const ledger = await ledgerOf(t.promotionalCredits, customerId);
    expect(balance.amount).to.equal(expectChained(ledger));
    // Every call answered its entry as the ledger holds it.
    const stored = new Map(ledger.map((e) => [e.id, e]));
    expect(answered.length).to.be.greaterThan(0);
    for (const entry of answered) expect(entry).to.deep.equal(stored.get(entry.id));
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('keeps every balance exact when captures, releases and reversals (balance read with the write) race deducts across 12 customers on two servers', async function () {
    this.timeout(120_000);
    const clients = [t.promotionalCredits, t.replica.promotionalCredits];
    const customers = Array.from({ length: 12 }, (_, i) => `mixed-${i}`);
    const holds: string[] = [];
    const deducted: string[] = [];
    for (const customerId of customers) {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 1000n });
      for (let k = 0; k < 6; k++) holds.push((await t.promotionalCredits.holdPromotionalCredits({ ...base, customerId, amount: 20n })).hold!.id);
      for (let k = 0; k < 4; k++) deducted.push((await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId, amount: 7n })).promotionalCredit!.id);
    }
    // Each hold is captured or released by two calls at once, each deduction reversed by two, among deducts on every balance.
    const ops = [
      ...holds.flatMap((holdId, i) => [0, 1].map(() => (pc: (typeof clients)[number]) =>
        i % 2 === 0 ? pc.capturePromotionalCreditHold({ holdId, amount: 15n }) : pc.releasePromotionalCreditHold({ holdId }),
      )),
      ...deducted.flatMap((id) => [0, 1].map(() => (pc: (typeof clients)[number]) => pc.reversePromotionalCredit({ id, description: 'refund' }))),
      ...customers.flatMap((customerId) => [0, 1, 2, 3].map(() => (pc: (typeof clients)[number]) => pc.deductPromotionalCredits({ ...base, customerId, amount: 3n }))),
    ];
    const results = await Promise.allSettled(ops.map((op, i) => op(clients[i % 2]!)));
    const refused = results.filter((r) => r.status === 'rejected').map((r) => decodeError((r as PromiseRejectedResult).reason as ServiceError).reason);
    // Exactly one of each pair of captures, releases and reversals went through.
    expect(refused.filter((r) => r === 'HOLD_NOT_ACTIVE')).to.have.length(holds.length);
    expect(refused.filter((r) => r === 'ALREADY_REVERSED')).to.have.length(deducted.length);
    expect(refused).to.have.length(holds.length + deducted.length);
    for (const customerId of customers) {
      const balance = await balanceOf(customerId);
      // 1000 - 3 captures of 15 - 4 deducts of 7 reversed - 4 deducts of 3; nothing held.
      expect(balance).to.deep.include({ amount: 1000n - 45n - 12n, held: 0n });
      expect(balance.amount).to.equal(expectChained(await ledgerOf(t.promotionalCredits, customerId)));
    }
    const states: Array<{ status: string; n: number }> = await t.server.dataSource.query(
      `SELECT status, count(*)::int AS n FROM promotional_credit_holds WHERE tenant_id = $1 AND id = ANY ($2::uuid[]) GROUP BY status ORDER BY status`,
      [t.tenant.id, holds],
    );
    expect(states).to.deep.equal([
      { status: 'CAPTURED', n: holds.length / 2 },
      { status: 'RELEASED', n: holds.length / 2 },
    ]);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('a hold expiring while captures race it is either captured or expired, never both', async function () {
    this.timeout(60_000);
    const customerId = 'photo-finish';
    const clients = [t.promotionalCredits, t.replica.promotionalCredits];
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 10_000n });
    for (let round = 0; round < 10; round++) {
      const hold = await t.promotionalCredits.holdPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: inMs(300) });
      // Captures fired around the expiry from both servers (and both sweeps running).
      const attempts = await Promise.allSettled(
        Array.from({ length: 8 }, async (_, i) => {
          await sleep(200 + i * 25);
          return clients[i % 2]!.capturePromotionalCreditHold({ holdId: hold.hold!.id });
        }),
      );
      const captured = attempts.filter((a) => a.status === 'fulfilled').length;
      const final = (await t.promotionalCredits.getPromotionalCreditHold({ holdId: hold.hold!.id })).hold!;
      expect(captured, `round ${round}`).to.be.at.most(1);
      expect(final.status, `round ${round}`).to.equal(captured === 1 ? HoldStatus.HOLD_STATUS_CAPTURED : HoldStatus.HOLD_STATUS_EXPIRED);
      for (const a of attempts) if (a.status === 'rejected') expect(decodeError(a.reason as ServiceError).reason).to.equal('HOLD_NOT_ACTIVE');
    }
    const entries = await ledgerOf(t.promotionalCredits, customerId);
    const captures = entries.filter((e) => e.origin === Origin.ORIGIN_HOLD_CAPTURE).length;
    const capturedHolds: Array<{ n: string }> = await t.server.dataSource.query(
      `SELECT count(*) AS n FROM promotional_credit_holds WHERE tenant_id = $1 AND status = 'CAPTURED'`,
      [t.tenant.id],
    );
    expect(String(captures)).to.equal(capturedHolds[0]!.n);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });
});
