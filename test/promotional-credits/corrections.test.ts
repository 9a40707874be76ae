import { randomUUID } from 'node:crypto';
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { QueryRunner } from 'typeorm';
import {
  AddPromotionalCreditsRequest,
  ListPromotionalCreditsRequest,
  Origin,
  PromotionalCreditServiceClient,
  PromotionalCreditType,
} from '../../gen/credits/v1/promotional_credit_service';
import { entryHash } from '../../src/promotional-credits/entry-hash';
import { verifyLedger } from '../../src/promotional-credits/ledger-audit';
import { expectChained, ledgerOf, ledgerProblemsOf } from '../support/ledger';
import { apiKeyInterceptor, unary } from '../support/server';
import { decodeError, expectError } from '../support/status';
import { useTenantClients } from '../support/tenant-clients';

const { PROMOTIONAL_CREDIT_TYPE_INCREMENT: INCREMENT, PROMOTIONAL_CREDIT_TYPE_DECREMENT: DECREMENT } = PromotionalCreditType;
const base = { description: 'corrections', currencyCode: 'USD' };
const inMs = (ms: number) => new Date(Date.now() + ms);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const usd = (balances: Array<{ currencyCode: string; amount: bigint }> | undefined) => balances?.find((b) => b.currencyCode === 'USD')?.amount ?? 0n;

describe('corrections and audit: reversal, hash chain, metadata, validate_only', () => {
  const t = useTenantClients({ replica: true });

  /**
   * Edits rows the way an intruder with database access would: in a
   * transaction that is rolled back, with the append-only trigger held off
   * for this session only (skips the test where the database user may not).
   */
  async function asIntruder(test: Mocha.Context, work: (runner: QueryRunner) => Promise<void>): Promise<void> {
    const runner = t.server.dataSource.createQueryRunner();
    await runner.startTransaction();
    try {
      try {
        await runner.query(`SET LOCAL session_replication_role = replica`);
      } catch (err) {
        if ((err as { code?: string }).code === '42501') test.skip(); // not allowed for this database user
        throw err;
      }
      await work(runner);
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
  }

  describe('ReversePromotionalCredit', () => {
    it('puts a reversed deduction back into the lots it came from, each with its expire_time', async () => {
      const pc = t.promotionalCredits;
      const customerId = 'refund';
      const expiry = inMs(20 * 86_400_000);
      const expiring = await pc.addPromotionalCredits({ ...base, customerId, amount: 40n, expireTime: expiry });
      const forever = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
      const spent = await pc.deductPromotionalCredits({ ...base, customerId, amount: 70n, reference: 'order-1' });
      const reversal = await pc.reversePromotionalCredit({ id: spent.promotionalCredit!.id, description: 'refund of order 1', metadata: { refund: 'r-1' } });
      const entry = reversal.promotionalCredit!;
      expect(entry).to.deep.include({
        type: INCREMENT,
        origin: Origin.ORIGIN_REVERSAL,
        amount: 70n,
        reversesId: spent.promotionalCredit!.id,
        closingBalance: 140n,
        description: 'refund of order 1',
        metadata: { refund: 'r-1' },
      });
      expect(entry.allocations).to.deep.equal(spent.promotionalCredit!.allocations);
      expect(usd(reversal.balance!.balances)).to.equal(140n);
      const lots = await pc.listPromotionalCreditLots({ customerId });
      expect(lots.lots.map((l) => [l.id, l.remaining, l.expireTime?.getTime()])).to.deep.equal([
        [expiring.promotionalCredit!.id, 40n, expiry.getTime()],
        [forever.promotionalCredit!.id, 100n, undefined],
      ]);
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it('removes what is left of a reversed credit, and says NOTHING_TO_REVERSE when nothing is', async () => {
      const pc = t.promotionalCredits;
      const customerId = 'mistake';
      const granted = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
      await pc.deductPromotionalCredits({ ...base, customerId, amount: 30n });
      const reversal = await pc.reversePromotionalCredit({ id: granted.promotionalCredit!.id, description: 'granted by mistake' });
      expect(reversal.promotionalCredit!).to.deep.include({ type: DECREMENT, origin: Origin.ORIGIN_REVERSAL, amount: 70n, closingBalance: 0n });
      const spentOut = await pc.addPromotionalCredits({ ...base, customerId, amount: 5n });
      await pc.deductPromotionalCredits({ ...base, customerId, amount: 5n });
      const err = await expectError(pc.reversePromotionalCredit({ id: spentOut.promotionalCredit!.id, description: 'x' }), status.FAILED_PRECONDITION, 'NOTHING_TO_REVERSE');
      expect(err.metadata).to.deep.equal({ id: spentOut.promotionalCredit!.id });
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it("gives nothing back of a deduction's part that came from a grant reversed since: the grant is gone whichever is reversed first", async () => {
      const pc = t.promotionalCredits;
      for (const [customerId, grantFirst] of [['both-grant-first', true], ['both-deduct-first', false]] as const) {
        const grant = await pc.addPromotionalCredits({ ...base, customerId, amount: 10n });
        const other = await pc.addPromotionalCredits({ ...base, customerId, amount: 5n, expireTime: inMs(86_400_000) }); // drawn first
        const spent = await pc.deductPromotionalCredits({ ...base, customerId, amount: 9n }); // 5 of `other`, 4 of `grant`
        const reverseGrant = () => pc.reversePromotionalCredit({ id: grant.promotionalCredit!.id, description: 'grant' });
        const reverseDeduction = () => pc.reversePromotionalCredit({ id: spent.promotionalCredit!.id, description: 'deduction' });
        if (grantFirst) {
          await reverseGrant(); // takes the grant's 6 left
          const back = await reverseDeduction(); // gives back other's 5, not the grant's 4
          expect(back.promotionalCredit!.amount).to.equal(5n);
          expect(back.promotionalCredit!.allocations.map((a) => [a.lotId, a.amount])).to.deep.equal([[other.promotionalCredit!.id, 5n]]);
        } else {
          await reverseDeduction(); // 9 back: the grant's lot holds 10 again
          await reverseGrant(); // takes all 10
        }
        const balance = await pc.getCustomerBalance({ customerId });
        expect(usd(balance.balance?.balances), customerId).to.equal(5n); // `other` alone: the grant is gone whichever came first
      }
      // A deduction drawn only from a reversed grant: nothing to give back.
      const customerId = 'all-revoked';
      const grant = await pc.addPromotionalCredits({ ...base, customerId, amount: 10n });
      const spent = await pc.deductPromotionalCredits({ ...base, customerId, amount: 4n });
      await pc.reversePromotionalCredit({ id: grant.promotionalCredit!.id, description: 'grant' });
      await expectError(pc.reversePromotionalCredit({ id: spent.promotionalCredit!.id, description: 'x' }), status.FAILED_PRECONDITION, 'NOTHING_TO_REVERSE');
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it('reverses an entry at most once, however many calls race on both servers', async () => {
      const customerId = 'race';
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 100n });
      const spent = await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId, amount: 60n });
      const clients = [t.promotionalCredits, t.replica.promotionalCredits];
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => clients[i % 2]!.reversePromotionalCredit({ id: spent.promotionalCredit!.id, description: `try ${i}` })),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(1);
      for (const r of results) {
        if (r.status === 'rejected') expect(decodeError(r.reason as ServiceError).reason).to.equal('ALREADY_REVERSED');
      }
      expect(usd((await t.promotionalCredits.getCustomerBalance({ customerId })).balance?.balances)).to.equal(100n);
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it('refuses to reverse expirations and reversals (NOT_REVERSIBLE) and unknown entries (NOT_FOUND)', async function () {
      this.timeout(20_000);
      const pc = t.promotionalCredits;
      const customerId = 'final';
      await pc.addPromotionalCredits({ ...base, customerId, amount: 10n, expireTime: inMs(800) });
      await pc.addPromotionalCredits({ ...base, customerId, amount: 10n });
      await sleep(1000);
      const spent = await pc.deductPromotionalCredits({ ...base, customerId, amount: 1n }); // settles the expiry first
      const reversal = await pc.reversePromotionalCredit({ id: spent.promotionalCredit!.id, description: 'undo' });
      const expiration = (await ledgerOf(pc, customerId)).find((e) => e.origin === Origin.ORIGIN_EXPIRATION)!;
      await expectError(pc.reversePromotionalCredit({ id: expiration.id, description: 'x' }), status.FAILED_PRECONDITION, 'NOT_REVERSIBLE');
      await expectError(pc.reversePromotionalCredit({ id: reversal.promotionalCredit!.id, description: 'x' }), status.FAILED_PRECONDITION, 'NOT_REVERSIBLE');
      await expectError(pc.reversePromotionalCredit({ id: randomUUID(), description: 'x' }), status.NOT_FOUND, 'PROMOTIONAL_CREDIT_NOT_FOUND');
      await expectError(pc.reversePromotionalCredit({ id: 'nope', description: '' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    });

    it('puts credits back into a lot that expired meanwhile, which expire at once, right after the reversal', async function () {
      this.timeout(20_000);
      const pc = t.promotionalCredits;
      const customerId = 'late-refund';
      const lot = await pc.addPromotionalCredits({ ...base, customerId, amount: 50n, expireTime: inMs(900) });
      await pc.addPromotionalCredits({ ...base, customerId, amount: 10n });
      const spent = await pc.deductPromotionalCredits({ ...base, customerId, amount: 30n }); // all from the expiring lot
      await sleep(1200);
      const reversal = await pc.reversePromotionalCredit({ id: spent.promotionalCredit!.id, description: 'refund after expiry' });
      expect(usd(reversal.balance!.balances), 'what came back expired at once').to.equal(10n);
      const ledger = await ledgerOf(pc, customerId);
      const tail = ledger.slice(-2).map((e) => [e.origin, e.type, e.amount]);
      expect(tail).to.deep.equal([
        [Origin.ORIGIN_REVERSAL, INCREMENT, 30n],
        [Origin.ORIGIN_EXPIRATION, DECREMENT, 30n],
      ]);
      expect(ledger.at(-1)!.allocations.map((a) => a.lotId)).to.deep.equal([lot.promotionalCredit!.id]);
      // The call answers its entry as the ledger holds it: closing at 40, before the expiry that followed it.
      expect(reversal.promotionalCredit, 'the answered entry').to.deep.equal(ledger.at(-2));
      expect(reversal.promotionalCredit!.closingBalance).to.equal(40n);
      expectChained(ledger);
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it('reverses nothing of a lot past its expiry, not even what a hold keeps of it (NOTHING_TO_REVERSE)', async function () {
      this.timeout(20_000);
      const pc = t.promotionalCredits;
      const customerId = 'expired-grant';
      const expiring = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: inMs(900) });
      await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
      const hold = await pc.holdPromotionalCredits({ ...base, customerId, amount: 30n, expireTime: inMs(86_400_000) });
      await sleep(1200);
      // 70 of the lot expired; the 30 the hold keeps serve its capture alone.
      const err = await expectError(pc.reversePromotionalCredit({ id: expiring.promotionalCredit!.id, description: 'x' }), status.FAILED_PRECONDITION, 'NOTHING_TO_REVERSE');
      expect(err.metadata).to.deep.equal({ id: expiring.promotionalCredit!.id });
      const captured = await pc.capturePromotionalCreditHold({ holdId: hold.hold!.id });
      // Taken by the reversal, the capture drew 30 of the credits that never expire: 70 left, not 100.
      expect(usd(captured.balance!.balances)).to.equal(100n);
      expect(captured.promotionalCredit!.allocations.map((a) => [a.lotId, a.amount])).to.deep.equal([[expiring.promotionalCredit!.id, 30n]]);
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });
  });

  describe('time of a write', () => {
    it('checks the balance limit against what a reversal gives back, not against the whole deduction', async () => {
      const pc = t.promotionalCredits;
      const customerId = 'limit-back';
      const MAX = 9_223_372_036_854_775_807n;
      await pc.addPromotionalCredits({ ...base, customerId, amount: 5n, expireTime: new Date(Date.now() + 86_400_000) });
      const grant = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: new Date(Date.now() + 2 * 86_400_000) });
      const spent = await pc.deductPromotionalCredits({ ...base, customerId, amount: 10n }); // 5 of each lot
      await pc.reversePromotionalCredit({ id: grant.promotionalCredit!.id, description: 'grant taken back' }); // its 95 left leave
      await pc.addPromotionalCredits({ ...base, customerId, amount: MAX - 7n });
      // Only the 5 from the first lot come back (the grant's part does not): MAX - 2 fits.
      const reversal = await pc.reversePromotionalCredit({ id: spent.promotionalCredit!.id, description: 'refund' });
      expect([reversal.promotionalCredit!.amount, usd(reversal.balance?.balances)]).to.deep.equal([5n, MAX - 2n]);
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it('is read once the balance row is locked: a call that waited is dated after the write it waited for', async function () {
      this.timeout(20_000);
      const pc = t.promotionalCredits;
      const customerId = 'waited';
      await pc.addPromotionalCredits({ ...base, customerId, amount: 10n });
      const runner = t.server.dataSource.createQueryRunner();
      await runner.startTransaction();
      let deduct: ReturnType<typeof pc.deductPromotionalCredits> | undefined;
      try {
        await runner.query(`SELECT 1 FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2 FOR UPDATE`, [t.tenant.id, customerId]);
        deduct = pc.deductPromotionalCredits({ ...base, customerId, amount: 3n }); // waits for the lock
        await sleep(300);
        const item = { op: 'ADD', tenant_id: t.tenant.id, customer_id: customerId, currency_code: 'USD', amount: '100', description: 'meanwhile',
          credit_type: 'GENERAL', reference: '', done_by: 'test', with_others: false, validate_only: false };
        await runner.query(`SELECT outcome FROM promotional_credit_apply($1::jsonb)`, [JSON.stringify([item])]);
        await runner.commitTransaction();
      } finally {
        if (runner.isTransactionActive) await runner.rollbackTransaction();
        await runner.release();
      }
      const deducted = (await deduct!).promotionalCredit!;
      const ledger = await ledgerOf(pc, customerId);
      expect(ledger.map((e) => [e.description, e.closingBalance])).to.deep.equal([
        ['corrections', 10n],
        ['meanwhile', 110n],
        ['corrections', 107n],
      ]);
      // Dated before the write it waited for, as_of between the two read 107 before the 100 came.
      expect(deducted.createTime!.getTime()).to.be.at.least(ledger[1]!.createTime!.getTime());
      const before = await pc.getCustomerBalance({ customerId, asOfTime: new Date(deducted.createTime!.getTime() - 1) });
      expect(usd(before.balance?.balances)).to.equal(ledger[1]!.createTime!.getTime() < deducted.createTime!.getTime() ? 110n : 10n);
      expectChained(ledger);
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });
  });

  describe('hash chain', () => {
    it('chains every entry of a balance with the documented encoding, recomputable outside the service', async () => {
      const pc = t.promotionalCredits;
      // Multi-byte text and backslashes in free-text fields and metadata: the encoding counts UTF-8 bytes, not characters, and escapes nothing.
      const customerId = 'audited';
      await pc.addPromotionalCredits({
        ...base,
        customerId,
        amount: 100n,
        description: 'Crédit de bienvenue 🎁 \\x41 \\',
        metadata: { order: 'o-1', 'a.b': 'ünïcödé' },
        expireTime: inMs(86_400_000),
      });
      await pc.deductPromotionalCredits({ ...base, customerId, amount: 30n, reference: 'inv-7-ß' });
      await pc.setPromotionalCredits({ ...base, customerId, amount: 200n, currencyCode: 'EUR' });
      const entries = await ledgerOf(pc, customerId);
      const previous = new Map<string, string>();
      for (const e of entries) {
        // From the entry as answered alone: ledger times are whole milliseconds (before, microseconds the API does not answer).
        const expected = entryHash(previous.get(e.currencyCode) ?? '', {
          id: e.id,
          tenantId: t.tenant.id,
          customerId: e.customerId,
          currencyCode: e.currencyCode,
          type: PromotionalCreditType[e.type].replace('PROMOTIONAL_CREDIT_TYPE_', ''),
          origin: Origin[e.origin].replace('ORIGIN_', ''),
          amount: e.amount,
          closingBalance: e.closingBalance,
          description: e.description,
          creditType: 'GENERAL',
          reference: e.reference,
          doneBy: e.doneBy,
          createTimeMicros: BigInt(e.createTime!.getTime()) * 1000n,
          expireTimeMicros: e.expireTime === undefined ? undefined : BigInt(e.expireTime.getTime()) * 1000n,
          reversesId: e.reversesId === '' ? undefined : e.reversesId,
          allocations: e.allocations.map((a) => ({ lotId: a.lotId, amount: a.amount })),
          metadata: e.metadata,
        });
        expect(e.hash, `entry ${e.id}`).to.equal(expected).and.match(/^[0-9a-f]{64}$/);
        previous.set(e.currencyCode, e.hash);
      }
    });

    it('lets verify find an edited entry and name exactly that one', async function () {
      const pc = t.promotionalCredits;
      const customerId = 'tampered';
      await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
      const victim = await pc.deductPromotionalCredits({ ...base, customerId, amount: 30n, description: 'real' });
      await pc.deductPromotionalCredits({ ...base, customerId, amount: 10n });
      await asIntruder(this, async (runner) => {
        await runner.query(`UPDATE promotional_credits SET description = 'forged' WHERE id = $1`, [victim.promotionalCredit!.id]);
        const { details } = await verifyLedger(runner.manager, { tenantId: t.tenant.id });
        expect(details.map((d) => d.kind)).to.deep.equal(['HASH_CHAIN_BROKEN']);
        expect(details[0]!.message).to.include(`customer ${customerId}`).and.include(`entry ${victim.promotionalCredit!.id}`);
      });
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it('reports entries whose JSON a tamperer changed in shape, and a last entry removed with the sums made to match, instead of failing', async function () {
      const pc = t.promotionalCredits;
      const shapes = { 'shape-metadata': `'{"inv": 7}'`, 'shape-allocations': `NULL`, 'shape-lot': `'[{"lot_id": null, "amount": "5"}]'` };
      const victims: Record<string, string> = {};
      for (const customerId of Object.keys(shapes)) {
        await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, metadata: { inv: '7' } });
        victims[customerId] = (await pc.deductPromotionalCredits({ ...base, customerId, amount: 5n, metadata: { inv: '7' } })).promotionalCredit!.id;
      }
      await pc.addPromotionalCredits({ ...base, customerId: 'shape-gone', amount: 100n });
      const gone = (await pc.addPromotionalCredits({ ...base, customerId: 'shape-gone', amount: 7n })).promotionalCredit!.id;
      await asIntruder(this, async (runner) => {
        await runner.query(`UPDATE promotional_credits SET metadata = '{"inv": 7}' WHERE id = $1`, [victims['shape-metadata']]);
        await runner.query(`UPDATE promotional_credits SET allocations = '{"lot": 1}' WHERE id = $1`, [victims['shape-allocations']]);
        await runner.query(`UPDATE promotional_credits SET allocations = '[{"lot_id": null, "amount": "5"}]' WHERE id = $1`, [victims['shape-lot']]);
        // The newest entry and its lot deleted, the balance lowered to match: every sum still agrees.
        await runner.query(`DELETE FROM promotional_credit_lots WHERE id = $1`, [gone]);
        await runner.query(`DELETE FROM promotional_credits WHERE id = $1`, [gone]);
        await runner.query(`UPDATE promotional_credit_balances SET amount = 100 WHERE tenant_id = $1 AND customer_id = 'shape-gone'`, [t.tenant.id]);
        const { audit, details } = await verifyLedger(runner.manager, { tenantId: t.tenant.id });
        expect(audit.problems, 'the sums agree').to.deep.equal([]);
        expect([...new Set(details.map((d) => d.customerId))].sort()).to.deep.equal(['shape-allocations', 'shape-gone', 'shape-lot', 'shape-metadata']);
        const found = Object.fromEntries(details.filter((d) => d.kind === 'HASH_CHAIN_BROKEN').map((d) => [d.customerId, [d.kind, d.message]]));
        expect(Object.keys(found).sort()).to.deep.equal(['shape-allocations', 'shape-gone', 'shape-lot', 'shape-metadata']);
        for (const customerId of Object.keys(shapes)) expect(found[customerId]![1]).to.include(`entry ${victims[customerId]}`).and.include('the write path never stores that');
        expect(found['shape-gone']).to.deep.equal(['HASH_CHAIN_BROKEN', found['shape-gone']![1]]);
        expect(found['shape-gone']![1]).to.match(/entries after it are missing/);
      });
    });

    it('walks every balance across page boundaries and names the first edited entry of each broken chain', async function () {
      const pc = t.promotionalCredits;
      const ids: Record<string, string[]> = {};
      for (const customerId of ['walk-a', 'walk-b', 'walk-c']) {
        ids[customerId] = [];
        for (let k = 0; k < 4; k++) ids[customerId].push((await pc.addPromotionalCredits({ ...base, customerId, amount: BigInt(k + 1) })).promotionalCredit!.id);
      }
      await asIntruder(this, async (runner) => {
        expect((await verifyLedger(runner.manager, { tenantId: t.tenant.id, hashPageSize: 3 })).details, 'untouched').to.deep.equal([]);
        // The third entry of walk-b (its chain starts on one page and goes on on the next), and walk-c's last (the walk's end).
        const edited = [ids['walk-b']![2]!, ids['walk-c']![3]!];
        for (const id of edited) await runner.query(`UPDATE promotional_credits SET description = 'forged' WHERE id = $1`, [id]);
        for (const hashPageSize of [1, 3, 5, 5000]) {
          const { details } = await verifyLedger(runner.manager, { tenantId: t.tenant.id, hashPageSize });
          expect(details.map((d) => d.kind), `pages of ${hashPageSize}`).to.deep.equal(['HASH_CHAIN_BROKEN', 'HASH_CHAIN_BROKEN']);
          expect(details.map((d) => d.customerId)).to.deep.equal(['walk-b', 'walk-c']);
          details.forEach((d, n) => expect(d.message).to.include(`entry ${edited[n]}`));
        }
      });
    });
  });

  describe('metadata', () => {
    it('stores pairs as given, and the metadata filter finds the entries having every given pair', async () => {
      const pc = t.promotionalCredits;
      const one = await pc.addPromotionalCredits({ ...base, customerId: 'm1', amount: 10n, metadata: { order_id: 'o-1', channel: 'web' } });
      await pc.addPromotionalCredits({ ...base, customerId: 'm2', amount: 10n, metadata: { order_id: 'o-2', channel: 'web' } });
      const three = await pc.deductPromotionalCredits({ ...base, customerId: 'm1', amount: 1n, metadata: { order_id: 'o-1', channel: 'app', note: '' } });
      expect(one.promotionalCredit!.metadata).to.deep.equal({ order_id: 'o-1', channel: 'web' });
      expect((await pc.getPromotionalCredit({ id: three.promotionalCredit!.id })).promotionalCredit!.metadata).to.deep.equal({
        order_id: 'o-1',
        channel: 'app',
        note: '',
      });
      const byOrder = await pc.listPromotionalCredits({ metadata: { order_id: 'o-1' } });
      expect(byOrder.promotionalCredits.map((e) => e.id)).to.deep.equal([three.promotionalCredit!.id, one.promotionalCredit!.id]);
      const byBoth = await pc.listPromotionalCredits({ metadata: { order_id: 'o-1', channel: 'web' } });
      expect(byBoth.promotionalCredits.map((e) => e.id)).to.deep.equal([one.promotionalCredit!.id]);
      expect((await pc.listPromotionalCredits({ metadata: { order_id: 'o-3' } })).promotionalCredits).to.deep.equal([]);
      // Another tenant's entry with the same pair stays invisible (checked by tenant id in every list).
    });

    it('refuses more than 20 pairs, bad keys and long values, listing every bad pair', async () => {
      const pc = t.promotionalCredits;
      const many = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v']));
      let err = await expectError(pc.addPromotionalCredits({ ...base, customerId: 'x', amount: 1n, metadata: many }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(err.fields).to.have.property('metadata');
      err = await expectError(
        pc.addPromotionalCredits({ ...base, customerId: 'x', amount: 1n, metadata: { 'bad key': 'v', ['k'.repeat(41)]: 'v', ok: 'v'.repeat(501) } }),
        status.INVALID_ARGUMENT,
        'VALIDATION_FAILED',
      );
      expect(Object.keys(err.fields)).to.have.length(3);
      expect((await pc.getCustomerBalance({ customerId: 'x' })).balance!.balances).to.deep.equal([]);
    });

    it('refuses the key __proto__, which JavaScript decoders drop, and takes the text elsewhere', async () => {
      const pc = t.promotionalCredits;
      // An own key, as a Go or Python caller sends it; the test clients' fromPartial would drop it, so these go out as built.
      const reserved = JSON.parse('{"order_id": "o-9", "__proto__": "x"}') as Record<string, string>;
      const client = new PromotionalCreditServiceClient(t.server.address, credentials.createInsecure(), { interceptors: [apiKeyInterceptor(t.tenant.rwKey)] });
      let err: Awaited<ReturnType<typeof expectError>>;
      try {
        const add = { ...AddPromotionalCreditsRequest.fromPartial({ ...base, customerId: 'proto', amount: 1n }), metadata: reserved };
        err = await expectError(unary(client.addPromotionalCredits, client, add), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
        expect(err.fields).to.deep.equal({ 'metadata["__proto__"]': 'key "__proto__" is reserved: JavaScript decoders drop it' });
        // As a filter it matched every entry before (the pair vanished in decoding).
        const list = { ...ListPromotionalCreditsRequest.fromPartial({}), metadata: reserved };
        err = await expectError(unary(client.listPromotionalCredits, client, list), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      } finally {
        client.close();
      }
      expect(Object.keys(err.fields)).to.deep.equal(['metadata["__proto__"]']);
      expect((await pc.getCustomerBalance({ customerId: 'proto' })).balance!.balances).to.deep.equal([]);
      // The same text as a value or a description is only text.
      const added = await pc.addPromotionalCredits({ ...base, customerId: 'proto', amount: 1n, description: '__proto__', metadata: { note: '__proto__' } });
      expect(added.promotionalCredit!.metadata).to.deep.equal({ note: '__proto__' });
    });

    it('refuses a string that is not UTF-8 (read with U+FFFD before, and stored so), and keeps any UTF-8 text as sent', async () => {
      const add = AddPromotionalCreditsRequest.encode(AddPromotionalCreditsRequest.fromPartial({ ...base, customerId: 'utf8', amount: 1n })).finish();
      // description (field 5) once more, as a Go caller with a []byte could send it: a later field wins.
      const badDescription = Buffer.from([0x2a, 0x03, 0x61, 0xff, 0x62]);
      const raw = new Client(t.server.address, credentials.createInsecure(), { interceptors: [apiKeyInterceptor(t.tenant.rwKey)] });
      const identity = (b: Buffer) => b;
      try {
        const err = await new Promise<ServiceError | null>((resolve) =>
          raw.makeUnaryRequest('/credits.v1.PromotionalCreditService/AddPromotionalCredits', identity, identity, Buffer.concat([add, badDescription]), new Metadata(), {}, (e) =>
            resolve(e),
          ),
        );
        expect(err, 'refused').to.not.equal(null);
        const error = decodeError(err!);
        expect([status[error.code], error.reason, error.message]).to.deep.equal([
          'INVALID_ARGUMENT',
          'VALIDATION_FAILED',
          'Invalid request: a string field is not valid UTF-8; send text as UTF-8.',
        ]);
      } finally {
        raw.close();
      }
      expect((await t.promotionalCredits.getCustomerBalance({ customerId: 'utf8' })).balance!.balances).to.deep.equal([]);
      const text = '\uFEFFnoël 🎁 \uFFFD';
      const added = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'utf8', amount: 1n, description: text, metadata: { note: text } });
      expect([added.promotionalCredit!.description, added.promotionalCredit!.metadata.note]).to.deep.equal([text, text]);
    });

    it("serves a one-pair filter from the metadata index, not from the tenant's whole ledger", async function () {
      this.timeout(60_000);
      // A tenant with a ledger worth indexing: 5,000 entries, through the write path in one statement.
      const writes = Array.from({ length: 5000 }, (_, i) => ({
        op: 'ADD',
        tenant_id: t.tenant.id,
        customer_id: `bulk-${i % 50}`,
        currency_code: 'USD',
        amount: '1',
        description: 'bulk',
        credit_type: 'GENERAL',
        reference: '',
        done_by: 'rw-key',
        metadata: { order_id: `o-${i}` },
        with_others: false,
      }));
      await t.server.dataSource.query(`SELECT count(*) FROM promotional_credit_apply($1::jsonb)`, [JSON.stringify(writes)]);
      await t.server.dataSource.query(`ANALYZE promotional_credits`);
      const found = await t.promotionalCredits.listPromotionalCredits({ metadata: { order_id: 'o-4321' } });
      expect(found.promotionalCredits.map((e) => e.customerId)).to.deep.equal(['bulk-21']);
      const plan: Array<{ 'QUERY PLAN': string }> = await t.server.dataSource.query(
        `EXPLAIN SELECT e.id FROM promotional_credits e WHERE e.tenant_id = $1 AND e.metadata @> $2::jsonb AND e.metadata <> '{}'::jsonb ORDER BY e.seq DESC LIMIT 11`,
        [t.tenant.id, JSON.stringify({ order_id: 'o-4321' })],
      );
      const text = plan.map((r) => r['QUERY PLAN']).join('\n');
      expect(text, text).to.include('promotional_credits_metadata');
    });
  });

  describe('validate_only', () => {
    const counts = async () =>
      (
        (await t.server.dataSource.query(
          `SELECT (SELECT count(*) FROM promotional_credits WHERE tenant_id = $1) AS entries,
                  (SELECT count(*) FROM events WHERE tenant_id = $1) AS events,
                  (SELECT count(*) FROM promotional_credit_holds WHERE tenant_id = $1) AS holds,
                  (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1) AS keys,
                  (SELECT coalesce(sum(amount), 0) FROM promotional_credit_balances WHERE tenant_id = $1) AS total`,
          [t.tenant.id],
        )) as Array<Record<string, string>>
      )[0]!;
    const keyed = () => {
      const md = new Metadata();
      md.set('idempotency-key', randomUUID());
      return md;
    };

    it('answers what each mutating RPC would answer, with empty ids, and writes nothing (no entry, event, hold or idempotency record)', async () => {
      const pc = t.promotionalCredits;
      const customerId = 'dry';
      const granted = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
      const spent = await pc.deductPromotionalCredits({ ...base, customerId, amount: 10n });
      const hold = await pc.holdPromotionalCredits({ ...base, customerId, amount: 20n });
      const before = await counts();

      const add = await pc.addPromotionalCredits({ ...base, customerId, amount: 5n, validateOnly: true }, keyed());
      expect(add.promotionalCredit!).to.deep.include({ id: '', hash: '', type: INCREMENT, amount: 5n, closingBalance: 95n, origin: Origin.ORIGIN_ADD });
      const deduct = await pc.deductPromotionalCredits({ ...base, customerId, validateOnly: true }, keyed());
      expect(deduct.promotionalCredit!).to.deep.include({ id: '', amount: 70n, closingBalance: 20n });
      expect(deduct.balance!.balances[0]).to.deep.include({ amount: 20n, held: 20n, available: 0n });
      const set = await pc.setPromotionalCredits({ ...base, customerId, amount: 50n, validateOnly: true }, keyed());
      expect(set.promotionalCredit!).to.deep.include({ id: '', type: DECREMENT, amount: 40n, closingBalance: 50n });
      const reverse = await pc.reversePromotionalCredit({ id: spent.promotionalCredit!.id, description: 'dry', validateOnly: true }, keyed());
      expect(reverse.promotionalCredit!).to.deep.include({ id: '', reversesId: spent.promotionalCredit!.id, amount: 10n });
      const newHold = await pc.holdPromotionalCredits({ ...base, customerId, amount: 30n, validateOnly: true }, keyed());
      expect(newHold.hold!).to.deep.include({ id: '', amount: 30n });
      const capture = await pc.capturePromotionalCreditHold({ holdId: hold.hold!.id, amount: 5n, validateOnly: true }, keyed());
      expect(capture.promotionalCredit!).to.deep.include({ id: '', amount: 5n, origin: Origin.ORIGIN_HOLD_CAPTURE });
      const release = await pc.releasePromotionalCreditHold({ holdId: hold.hold!.id, validateOnly: true }, keyed());
      expect(release.balance!.balances[0]).to.deep.include({ held: 0n });
      // Errors are answered as the real call would answer them.
      await expectError(pc.deductPromotionalCredits({ ...base, customerId, amount: 1000n, validateOnly: true }), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');
      const takeBack = await pc.reversePromotionalCredit({ id: granted.promotionalCredit!.id, description: 'x', validateOnly: true });
      expect(takeBack.promotionalCredit!, 'what is left of the lot, as far as the hold allows').to.deep.include({ id: '', type: DECREMENT, amount: 70n });

      expect(await counts()).to.deep.equal(before);
      const hold2 = await pc.getPromotionalCreditHold({ holdId: hold.hold!.id });
      expect(hold2.hold!.status).to.equal(1); // still ACTIVE
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });

    it('never changes the outcome of real deducts it runs among', async function () {
      this.timeout(60_000);
      const customerId = 'dry-race';
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 500n });
      const clients = [t.promotionalCredits, t.replica.promotionalCredits];
      const calls = Array.from({ length: 120 }, (_, i) =>
        clients[i % 2]!.deductPromotionalCredits({ ...base, customerId, amount: 10n, validateOnly: i % 2 === 1 }),
      );
      const results = await Promise.allSettled(calls);
      const real = results.filter((_, i) => i % 2 === 0);
      expect(real.filter((r) => r.status === 'fulfilled')).to.have.length(50);
      const ledger = await ledgerOf(t.promotionalCredits, customerId);
      expect(ledger).to.have.length(51);
      expectChained(ledger);
      expect(usd((await t.promotionalCredits.getCustomerBalance({ customerId })).balance?.balances)).to.equal(0n);
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });
  });
});
