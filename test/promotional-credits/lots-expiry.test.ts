import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { expect } from 'chai';
import { AddPromotionalCreditsRequest, Origin, PromotionalCreditType, type PromotionalCredit } from '../../gen/credits/v1/promotional_credit_service';
import { applyItem, balanceLockOwners, expectChained, ledgerOf, ledgerProblemsOf, withBalanceLocked } from '../support/ledger';
import { walkPages } from '../support/pages';
import { apiKeyInterceptor } from '../support/server';
import { decodeError, expectError } from '../support/status';
import { eventually } from '../support/eventually';
import { useTenantClients } from '../support/tenant-clients';

const { PROMOTIONAL_CREDIT_TYPE_INCREMENT: INCREMENT, PROMOTIONAL_CREDIT_TYPE_DECREMENT: DECREMENT } = PromotionalCreditType;
const base = { description: 'lots', currencyCode: 'USD' };

const inMs = (ms: number) => new Date(Date.now() + ms);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('credits that expire: lots, consumption order, expiration entries, as-of balances', () => {
  const t = useTenantClients({ replica: true });
  const usd = (balances: Array<{ currencyCode: string; amount: bigint }> | undefined) => balances?.find((b) => b.currencyCode === 'USD')?.amount ?? 0n;

  it('draws from lots soonest-expiring first, never-expiring last, then oldest first, and says so in allocations', async () => {
    const pc = t.promotionalCredits;
    const customerId = 'order';
    const far = inMs(30 * 86_400_000);
    const near = inMs(10 * 86_400_000);
    // Granted in this order: never (a), far (b), never (c), near (d), near (e): consumption order d, e, b, a, c.
    const a = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
    const b = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: far });
    const c = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
    const d = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: near });
    const e = await pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: near });
    const [idA, idB, idC, idD, idE] = [a, b, c, d, e].map((r) => r.promotionalCredit!.id);
    expect(b.promotionalCredit!.expireTime!.getTime()).to.equal(far.getTime());
    expect(a.promotionalCredit!.origin).to.equal(Origin.ORIGIN_ADD);

    const lots = await pc.listPromotionalCreditLots({ customerId });
    expect(lots.lots.map((l) => l.id)).to.deep.equal([idD, idE, idB, idA, idC]);

    const first = await pc.deductPromotionalCredits({ ...base, customerId, amount: 150n });
    expect(first.promotionalCredit!.origin).to.equal(Origin.ORIGIN_DEDUCT);
    expect(first.promotionalCredit!.allocations.map((x) => [x.lotId, x.amount])).to.deep.equal([
      [idD, 100n],
      [idE, 50n],
    ]);
    const second = await pc.deductPromotionalCredits({ ...base, customerId, amount: 200n });
    expect(second.promotionalCredit!.allocations.map((x) => [x.lotId, x.amount])).to.deep.equal([
      [idE, 50n],
      [idB, 100n],
      [idA, 50n],
    ]);
    // A whole-balance deduct and a Set downwards draw the same way.
    const set = await pc.setPromotionalCredits({ ...base, customerId, amount: 60n });
    expect(set.promotionalCredit!).to.deep.include({ type: DECREMENT, origin: Origin.ORIGIN_SET, amount: 90n });
    expect(set.promotionalCredit!.allocations.map((x) => [x.lotId, x.amount])).to.deep.equal([
      [idA, 50n],
      [idC, 40n],
    ]);

    const left = await pc.listPromotionalCreditLots({ customerId });
    expect(left.lots.map((l) => [l.id, l.amount, l.remaining, l.remainingDecimal])).to.deep.equal([[idC, 100n, 60n, '0.60']]);
    const all = await walkPages(
      (pageToken) => pc.listPromotionalCreditLots({ customerId, includeEmpty: true, pageSize: 2, pageToken }),
      (page) => page.lots,
    );
    expect(all.map((l) => [l.id, l.remaining])).to.deep.equal([
      [idD, 0n],
      [idE, 0n],
      [idB, 0n],
      [idA, 0n],
      [idC, 60n],
    ]);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('lists every lot with include_empty in consumption order, lots with nothing left between open ones, at any page size', async () => {
    const pc = t.promotionalCredits;
    const customerId = 'interleaved';
    // Consumption order: soon (used up), mid (open), late (reversed: nothing left), never (open).
    const soon = await pc.addPromotionalCredits({ ...base, customerId, amount: 10n, expireTime: inMs(10 * 86_400_000) });
    const mid = await pc.addPromotionalCredits({ ...base, customerId, amount: 20n, expireTime: inMs(20 * 86_400_000) });
    const late = await pc.addPromotionalCredits({ ...base, customerId, amount: 30n, expireTime: inMs(30 * 86_400_000) });
    const never = await pc.addPromotionalCredits({ ...base, customerId, amount: 40n });
    await pc.deductPromotionalCredits({ ...base, customerId, amount: 10n });
    await pc.reversePromotionalCredit({ id: late.promotionalCredit!.id, description: 'granted by mistake' });
    const ids = [soon, mid, late, never].map((r) => r.promotionalCredit!.id);
    const open = await pc.listPromotionalCreditLots({ customerId });
    expect(open.lots.map((l) => [l.id, l.remaining])).to.deep.equal([
      [ids[1], 20n],
      [ids[3], 40n],
    ]);
    for (const pageSize of [1, 2, 3, 4, 10]) {
      const all = await walkPages(
        (pageToken) => pc.listPromotionalCreditLots({ customerId, includeEmpty: true, pageSize, pageToken }),
        (page) => page.lots,
      );
      expect(
        all.map((l) => [l.id, l.remaining]),
        `page size ${pageSize}`,
      ).to.deep.equal([
        [ids[0], 0n],
        [ids[1], 20n],
        [ids[2], 0n],
        [ids[3], 40n],
      ]);
    }
  });

  it('never counts expired credits, and writes the EXPIRATION entry before the next change of the balance, so the chain stays true', async function () {
    this.timeout(30_000);
    const pc = t.promotionalCredits;
    const customerId = 'between';
    const expiry = inMs(1500);
    const lot = await pc.addPromotionalCredits({ ...base, customerId, amount: 70n, expireTime: expiry });
    await pc.addPromotionalCredits({ ...base, customerId, amount: 30n });
    expect(usd((await pc.getCustomerBalance({ customerId })).balance?.balances)).to.equal(100n);
    // Hold the balance row so that no sweep settles it: the expiry falls between two writes.
    await withBalanceLocked(t.server.dataSource, t.tenant.id, customerId, async () => {
      await sleep(Math.max(0, expiry.getTime() - Date.now()) + 200);
      // Read while the EXPIRATION entry cannot have been written: the balance already leaves the credits out.
      const read = await pc.getCustomerBalance({ customerId });
      expect(usd(read.balance?.balances), 'expired credits are never counted').to.equal(30n);
      const lots = await pc.listPromotionalCreditLots({ customerId });
      expect(lots.lots.map((l) => l.amount)).to.deep.equal([30n]);
      const unwritten: Array<{ n: string }> = await t.server.dataSource.query(
        `SELECT count(*) AS n FROM promotional_credits WHERE tenant_id = $1 AND origin = 'EXPIRATION'`,
        [t.tenant.id],
      );
      expect(unwritten[0]!.n).to.equal('0');
    });
    // The next write (or the sweep, whichever comes first) writes the expiration first.
    const deduct = await pc.deductPromotionalCredits({ ...base, customerId, amount: 10n });
    expect(deduct.promotionalCredit!.closingBalance).to.equal(20n);
    const ledger = await ledgerOf(pc, customerId);
    expect(ledger.map((e) => [e.type, e.origin, e.amount, e.closingBalance])).to.deep.equal([
      [INCREMENT, Origin.ORIGIN_ADD, 70n, 70n],
      [INCREMENT, Origin.ORIGIN_ADD, 30n, 100n],
      [DECREMENT, Origin.ORIGIN_EXPIRATION, 70n, 30n],
      [DECREMENT, Origin.ORIGIN_DEDUCT, 10n, 20n],
    ]);
    const expiration = ledger[2]!;
    expect(expiration.allocations.map((a) => [a.lotId, a.amount])).to.deep.equal([[lot.promotionalCredit!.id, 70n]]);
    expect(expiration.expireTime!.getTime(), 'an expiration says when its lot expired').to.equal(expiry.getTime());
    expect(expiration.doneBy).to.equal('(expiry)');
    expectChained(ledger);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('answers balances as of several instants, including one between an expiry and its entry', async function () {
    this.timeout(30_000);
    const pc = t.promotionalCredits;
    const customerId = 'as-of';
    const before = new Date();
    await sleep(20);
    await pc.addPromotionalCredits({ ...base, customerId, amount: 500n });
    const afterFirst = new Date();
    await sleep(20);
    const expiry = inMs(1200);
    await pc.addPromotionalCredits({ ...base, customerId, amount: 200n, expireTime: expiry });
    await pc.deductPromotionalCredits({ ...base, customerId, amount: 50n }); // from the expiring lot: 150 of it left
    const beforeExpiry = new Date();
    // The sweep (every second, in both server processes) writes the expiration.
    const ledger = await eventually(
      10_000,
      () => ledgerOf(pc, customerId),
      (entries) => entries.some((e) => e.origin === Origin.ORIGIN_EXPIRATION),
    );
    const expiration = ledger.find((e) => e.origin === Origin.ORIGIN_EXPIRATION)!;
    expect(expiration.amount).to.equal(150n);
    const written = expiration.createTime!.getTime();
    expect(written).to.be.at.least(expiry.getTime());

    const asOf = async (at: Date) => usd((await pc.getCustomerBalance({ customerId, asOfTime: at })).balance?.balances);
    expect(await asOf(before), 'before the first credit').to.equal(0n);
    expect((await pc.getCustomerBalance({ customerId, asOfTime: before })).balance!.balances).to.deep.equal([]);
    expect(await asOf(afterFirst)).to.equal(500n);
    expect(await asOf(beforeExpiry)).to.equal(650n);
    // Between the lot's expiry and the entry that records it, the credits are already gone.
    if (written > expiry.getTime() + 1) expect(await asOf(new Date(expiry.getTime() + Math.floor((written - expiry.getTime()) / 2)))).to.equal(500n);
    expect(await asOf(new Date(written + 1))).to.equal(500n);
    expect(await asOf(new Date())).to.equal(usd((await pc.getCustomerBalance({ customerId })).balance?.balances));
    const err = await pc.getCustomerBalance({ customerId, asOfTime: inMs(60_000) }).catch((e: unknown) => e as { code: number });
    expect((err as { code: number }).code, 'as_of_time in the future').to.equal(3);
    // Before Timestamp's range (0001-01-01), also before PostgreSQL's earliest instant: refused, not INTERNAL (found in review).
    for (const at of ['-007537-01-01T00:00:00Z', '0000-12-31T23:59:59Z']) {
      const refused = await expectError(pc.getCustomerBalance({ customerId, asOfTime: new Date(at) }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
      expect(refused.fields, `as_of_time ${at}`).to.deep.equal({ as_of_time: 'must be a timestamp between 0001-01-01 and 9999-12-31' });
    }
  });

  it('lets both server processes sweep thousands of expiring lots at once: each lot expires exactly once', async function () {
    this.timeout(120_000);
    const customers = 200;
    const lotsEach = 10;
    // Far enough ahead for 2,200 adds on a busy machine; the sweeps start then.
    const expiry = inMs(8000);
    const clients = [t.promotionalCredits, t.replica.promotionalCredits];
    // 2,000 expiring lots (and one never-expiring one per customer), written through both servers.
    await Promise.all(
      Array.from({ length: customers }, async (_, c) => {
        const pc = clients[c % 2]!;
        await pc.addPromotionalCredits({ ...base, customerId: `s${c}`, amount: 1000n });
        await Promise.all(Array.from({ length: lotsEach }, (_, l) => pc.addPromotionalCredits({ ...base, customerId: `s${c}`, amount: BigInt(l + 1), expireTime: expiry })));
      }),
    );
    const count = async () =>
      (
        (await t.server.dataSource.query(
          `SELECT count(*) AS entries, count(DISTINCT (allocations->0->>'lot_id')) AS lots FROM promotional_credits WHERE tenant_id = $1 AND origin = 'EXPIRATION'`,
          [t.tenant.id],
        )) as Array<{ entries: string; lots: string }>
      )[0]!;
    const done = await eventually(30_000, count, (c) => Number(c.entries) >= customers * lotsEach);
    // Let any sweep still running finish, then count again: nothing more, nothing twice.
    await sleep(1500);
    expect(await count()).to.deep.equal(done);
    expect(done).to.deep.equal({ entries: String(customers * lotsEach), lots: String(customers * lotsEach) });
    for (const c of [0, 1, 57, 199]) {
      expect(usd((await clients[c % 2]!.getCustomerBalance({ customerId: `s${c}` })).balance?.balances)).to.equal(1000n);
    }
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('keeps sum and chain under parallel adds (expiring and not) and deducts across lots on two servers', async function () {
    this.timeout(60_000);
    const customerId = 'busy';
    const clients = [t.promotionalCredits, t.replica.promotionalCredits];
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 1000n, expireTime: inMs(1800) });
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => {
        const pc = clients[i % 2]!;
        if (i % 4 === 0) return pc.addPromotionalCredits({ ...base, customerId, amount: 7n, expireTime: inMs(1000 + (i % 7) * 300) });
        if (i % 4 === 1) return pc.addPromotionalCredits({ ...base, customerId, amount: 5n });
        if (i % 4 === 2) return pc.deductPromotionalCredits({ ...base, customerId, amount: 9n });
        return pc.setPromotionalCredits({ ...base, customerId, amount: BigInt(100 + i) });
      }),
    );
    // A deduction may find too little; an Add served after its expire_time
    // (1 s ahead, on a loaded machine) is refused as such, by the API or by
    // the write path at its own instant.
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as Error).message).to.match(/INSUFFICIENT_BALANCE|expire_time must be in the future/);
    }
    // Let every lot expire and be settled, then check the whole ledger.
    await sleep(3500);
    await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId, amount: 1n });
    const ledger: PromotionalCredit[] = await ledgerOf(t.promotionalCredits, customerId);
    expectChained(ledger);
    // Every call answered its entry as the ledger holds it (a set to the balance it had writes none).
    const stored = new Map(ledger.map((e) => [e.id, e]));
    const answered = results.flatMap((r) => (r.status === 'fulfilled' && r.value.promotionalCredit ? [r.value.promotionalCredit] : []));
    expect(answered.length).to.be.greaterThan(100);
    for (const entry of answered) expect(entry).to.deep.equal(stored.get(entry.id));
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('sweeps the other balances when one cannot be settled, leaving that one for its writes', async () => {
    // In a transaction of its own, rolled back: lots made due through the SQL (the write path refuses a past expire_time).
    const runner = t.server.dataSource.createQueryRunner();
    await runner.startTransaction();
    try {
      const add = (customerId: string) =>
        applyItem(t.tenant.id, { op: 'ADD', customer_id: customerId, amount: '10', description: 'due', expire_time: new Date(Date.now() + 3_600_000).toISOString() });
      await runner.query(`SELECT count(*) FROM promotional_credit_apply($1::jsonb)`, [JSON.stringify([add('sweep-ok'), add('sweep-broken')])]);
      for (const table of ['promotional_credit_lots', 'promotional_credit_balances']) {
        const column = table === 'promotional_credit_lots' ? 'expire_time' : 'next_expire_time';
        await runner.query(`UPDATE ${table} SET ${column} = now() - interval '1 second' WHERE tenant_id = $1 AND customer_id IN ('sweep-ok', 'sweep-broken')`, [
          t.tenant.id,
        ]);
      }
      // A balance whose expiration would go below zero: settling it fails (a CHECK), as any unexpected error would.
      await runner.query(`UPDATE promotional_credit_balances SET amount = 0 WHERE tenant_id = $1 AND customer_id = 'sweep-broken'`, [t.tenant.id]);
      await runner.query(`SELECT promotional_credit_sweep(1000)`);
      const due: Array<{ customer_id: string; settled: boolean }> = await runner.query(
        `SELECT customer_id, next_expire_time IS NULL OR next_expire_time > now() AS settled FROM promotional_credit_balances
          WHERE tenant_id = $1 AND customer_id IN ('sweep-ok', 'sweep-broken') ORDER BY customer_id`,
        [t.tenant.id],
      );
      expect(due).to.deep.equal([
        { customer_id: 'sweep-broken', settled: false },
        { customer_id: 'sweep-ok', settled: true },
      ]);
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
  });

  it('settles a balance with the transaction id that locked it, so that its old version gets no MultiXact', async () => {
    // As for a group of Adds (add-many.test.ts): a balance locked by the
    // sweep's transaction and settled in a subtransaction of it (two ids)
    // got a MultiXact (see balanceLockOwners).
    const customers = ['mx-sweep-a', 'mx-sweep-b'];
    const add = (customerId: string) =>
      applyItem(t.tenant.id, { op: 'ADD', customer_id: customerId, amount: '10', description: 'due', expire_time: new Date(Date.now() + 3_600_000).toISOString() });
    const db = t.server.dataSource;
    await db.query(`SELECT count(*) FROM promotional_credit_apply($1::jsonb)`, [JSON.stringify(customers.map(add))]);
    // Made due through the SQL (the write path refuses a past expire_time), each in a statement of its own.
    await db.query(`UPDATE promotional_credit_lots SET expire_time = now() - interval '1 second' WHERE tenant_id = $1 AND customer_id = ANY ($2)`, [
      t.tenant.id,
      customers,
    ]);
    await db.query(`UPDATE promotional_credit_balances SET next_expire_time = now() - interval '1 second' WHERE tenant_id = $1 AND customer_id = ANY ($2)`, [
      t.tenant.id,
      customers,
    ]);
    // This sweep or the servers' own (each settles what the other has locked or settled).
    await db.query(`SELECT promotional_credit_sweep(1000)`);
    const versions = await eventually(
      5_000,
      () => balanceLockOwners(db, t.tenant.id, customers),
      (rows) => rows.every((v) => v.amount === '0'),
    );
    expect(versions.map((v) => [v.customerId, v.amount, v.lockedByWriter]), 'settled, with no lock of another transaction id').to.deep.equal([
      ['mx-sweep-a', '0', true],
      ['mx-sweep-b', '0', true],
    ]);
  });

  it("answers a write's other currencies as of after its wait for the row lock: credits that expired meanwhile are not counted", async function () {
    this.timeout(20_000);
    const pc = t.promotionalCredits;
    const customerId = 'others-waited';
    await pc.addPromotionalCredits({ ...base, customerId, amount: 100n });
    await pc.addPromotionalCredits({ ...base, customerId, currencyCode: 'EUR', amount: 50n, expireTime: inMs(1_000) });
    let deduct: ReturnType<typeof pc.deductPromotionalCredits> | undefined;
    await withBalanceLocked(t.server.dataSource, t.tenant.id, customerId, async () => {
      deduct = pc.deductPromotionalCredits({ ...base, customerId, amount: 1n }); // waits for the lock past the EUR lot's expiry
      await new Promise((r) => setTimeout(r, 2_000));
    });
    const deducted = await deduct!;
    expect(deducted.balance!.balances.map((b) => [b.currencyCode, b.amount, b.available])).to.deep.equal([
      ['EUR', 0n, 0n],
      ['USD', 99n, 99n],
    ]);
  });

  it('refuses an expire_time that is not in the future or more than 10 years ahead', async () => {
    const pc = t.promotionalCredits;
    for (const expireTime of [new Date(Date.now() - 1000), inMs(3660 * 86_400_000)]) {
      const err = (await pc.addPromotionalCredits({ ...base, customerId: 'x', amount: 1n, expireTime }).catch((e: unknown) => e)) as { code: number; details: string };
      expect(err.code).to.equal(3);
      expect(err.details).to.include('expire_time');
    }
    expect((await pc.getCustomerBalance({ customerId: 'x' })).balance!.balances).to.deep.equal([]);
  });

  it('refuses an expire_time that is no google.protobuf.Timestamp (nanos past 999999999), which decoding shifted by seconds', async () => {
    // As a Go or Python caller could send it; ts-proto's encoder cannot write one.
    const request = AddPromotionalCreditsRequest.encode(AddPromotionalCreditsRequest.fromPartial({ ...base, customerId: 'nanos', amount: 1n })).finish();
    const seconds = BigInt(Math.floor(Date.now() / 1000) + 3600);
    const expireTime = new BinaryWriter().tag(1, WireType.Varint).int64(seconds).tag(2, WireType.Varint).int32(2_000_000_000).finish();
    const bytes = Buffer.concat([request, new BinaryWriter().tag(8, WireType.LengthDelimited).bytes(expireTime).finish()]);
    const raw = new Client(t.server.address, credentials.createInsecure(), { interceptors: [apiKeyInterceptor(t.tenant.rwKey)] });
    const identity = (b: Buffer) => b;
    try {
      const err = await new Promise<ServiceError | null>((resolve) =>
        raw.makeUnaryRequest('/credits.v1.PromotionalCreditService/AddPromotionalCredits', identity, identity, bytes, new Metadata(), {}, (e) => resolve(e)),
      );
      expect(err, 'refused').to.not.equal(null);
      const error = decodeError(err!);
      expect([status[error.code], error.reason]).to.deep.equal(['INVALID_ARGUMENT', 'VALIDATION_FAILED']);
      expect(error.fields).to.deep.equal({ expire_time: 'is not a valid google.protobuf.Timestamp: nanos must be 0 to 999999999, not 2000000000' });
    } finally {
      raw.close();
    }
    expect((await t.promotionalCredits.getCustomerBalance({ customerId: 'nanos' })).balance!.balances).to.deep.equal([]);
  });
});
