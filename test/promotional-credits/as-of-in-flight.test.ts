import { Metadata, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { CurrencyBalance } from '../../gen/credits/v1/promotional_credit_service';
import { deadlocksIn } from '../support/database';
import { ledgerProblemsOf } from '../support/ledger';
import { decodeError, expectError } from '../support/status';
import { keyed } from '../support/idempotency-key';
import { useTenantClients } from '../support/tenant-clients';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Balances by currency (amount only). */
const shapeOf = (balances: readonly CurrencyBalance[] | undefined): Record<string, bigint> =>
  Object.fromEntries((balances ?? []).map((b) => [b.currencyCode, b.amount]));

/** A promise and whether it has settled yet. */
interface Watched<T> {
  promise: Promise<T>;
  settled(): boolean;
}

/** Watches a promise (a rejection is kept for the await, never unhandled). */
function watched<T>(promise: Promise<T>): Watched<T> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  return { promise, settled: () => settled };
}

/*
 * An entry (a hold, a capture) is dated when its balance row is locked and
 * seen when its transaction commits. A write that commits late (here: a
 * keyed call whose transaction has written its entry and waits to store its
 * idempotency record) is dated before a read made meanwhile: as of an
 * instant after its date, that read must wait for it, or the same instant
 * answers differently once it commits (found in review, with a group commit
 * waiting for another customer's row).
 */
describe('balances as of an instant while writes dated before it are in flight', () => {
  const t = useTenantClients({ replica: true });
  const base = { description: 'in flight' };

  const asOf = async (customerId: string, at: Date) => shapeOf((await t.promotionalCredits.getCustomerBalance({ customerId, asOfTime: at })).balance?.balances);

  /**
   * While keyed calls cannot store their records (idempotency_keys locked
   * in SHARE mode by another transaction): `writes` sent, each left dated
   * and uncommitted, then a read of `customerId` as of an instant after
   * them; `during` looks before the lock goes. Answers the writes, the
   * instant and the read, each watched.
   */
  async function readWhileInFlight(customerId: string, writes: () => Array<Promise<unknown>>, during: (read: Watched<Record<string, bigint>>, at: Date) => Promise<void>) {
    const runner = t.server.dataSource.createQueryRunner();
    await runner.startTransaction();
    try {
      await runner.query('LOCK TABLE idempotency_keys IN SHARE MODE');
      const sent = writes().map((w) => watched(w));
      await sleep(300);
      expect(
        sent.map((w) => w.settled()),
        'the writes wait to store their records',
      ).to.deep.equal(sent.map(() => false));
      const at = new Date();
      const read = watched(asOf(customerId, at));
      await during(read, at);
      return { sent, at, read };
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
  }

  it("waits for a write to an existing balance and answers it, the same as it does afterwards; other customers' reads do not wait", async function () {
    this.timeout(30_000);
    const pc = t.promotionalCredits;
    await pc.addPromotionalCredits({ ...base, customerId: 'a-cust', amount: 100n });
    await pc.addPromotionalCredits({ ...base, customerId: 'c-cust', amount: 7n });
    const { sent, at, read } = await readWhileInFlight(
      'a-cust',
      () => [pc.addPromotionalCredits({ ...base, customerId: 'a-cust', amount: 50n }, keyed())],
      async (read) => {
        expect(await asOf('c-cust', new Date()), 'another customer, meanwhile').to.deep.equal({ USD: 7n });
        await sleep(300);
        expect(read.settled(), 'the read waits for the write in flight').to.equal(false);
      },
    );
    const written = (await sent[0]!.promise) as Awaited<ReturnType<typeof pc.addPromotionalCredits>>;
    expect(written.promotionalCredit!.createTime!.getTime(), 'the entry is dated before the instant read').to.be.below(at.getTime());
    expect(await read.promise).to.deep.equal({ USD: 150n });
    expect(await asOf('a-cust', at), 'the same instant, read again').to.deep.equal({ USD: 150n });
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  for (const { also, usd } of [
    { also: 'alone', usd: 100n },
    { also: 'beside a write to an existing balance', usd: 120n },
  ]) {
    it(`waits for a customer's first write in a currency (its balance row not yet seen), ${also}`, async function () {
      this.timeout(30_000);
      const pc = t.promotionalCredits;
      await pc.addPromotionalCredits({ ...base, customerId: 'a-cust', amount: 100n });
      const { sent, at, read } = await readWhileInFlight(
        'a-cust',
        () => [
          pc.addPromotionalCredits({ ...base, customerId: 'a-cust', currencyCode: 'EUR', amount: 50n }, keyed()),
          ...(usd === 100n ? [] : [pc.addPromotionalCredits({ ...base, customerId: 'a-cust', amount: usd - 100n }, keyed())]),
        ],
        async (read) => {
          await sleep(300);
          expect(read.settled(), 'the read waits for the writes in flight').to.equal(false);
        },
      );
      const first = (await sent[0]!.promise) as Awaited<ReturnType<typeof pc.addPromotionalCredits>>;
      expect(first.promotionalCredit!.createTime!.getTime()).to.be.below(at.getTime());
      expect(await read.promise).to.deep.equal({ EUR: 50n, USD: usd });
      expect(await asOf('a-cust', at), 'the same instant, read again').to.deep.equal({ EUR: 50n, USD: usd });
      expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });
  }

  it('answers every instant read under 300 parallel keyed and keyless changes on two servers the same once they have all committed', async function () {
    this.timeout(60_000);
    const customerId = 'busy';
    const clients = [t.promotionalCredits, t.replica.promotionalCredits];
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 1_000_000n });
    const changes = Array.from({ length: 300 }, (_, i) => {
      const pc = clients[i % 2]!;
      const currencyCode = i % 3 === 0 ? 'EUR' : 'USD';
      const metadata = i % 4 < 2 ? keyed() : new Metadata();
      return i % 5 === 0
        ? pc.deductPromotionalCredits({ ...base, customerId, currencyCode: 'USD', amount: 3n }, metadata)
        : pc.addPromotionalCredits({ ...base, customerId, currencyCode, amount: BigInt(1 + (i % 7)) }, metadata);
    });
    const watchedChanges = changes.map((c) => watched(c));
    const reads: Array<{ at: Date; balances: Record<string, bigint>; changesLeft: number }> = [];
    const reading = (async () => {
      for (let n = 0; n < 40; n++) {
        const at = new Date();
        const changesLeft = watchedChanges.filter((c) => !c.settled()).length;
        reads.push({ at, balances: await asOf(customerId, at), changesLeft });
        await sleep(3);
      }
    })();
    await Promise.all([...changes, reading]);
    const again = await Promise.all(reads.map(({ at }) => asOf(customerId, at)));
    expect(again, 'each instant, read again').to.deep.equal(reads.map((r) => r.balances));
    expect(reads[0]!.changesLeft, 'an instant read while changes were in flight').to.be.above(0);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  // Found in review: locking the balance FOR KEY SHARE to wait, a read could
  // deadlock with a write (promotional_credit_balances_as_of_final says how);
  // the read answered INTERNAL, or the write retried after a second. Load, not
  // a schedule: with FOR KEY SHARE this failed in 2 of 5 runs.
  it('waits for the changes in flight to one balance without deadlocking with them: 8 readers and 12 writers over two servers', async function () {
    this.timeout(60_000);
    const customerId = 'contended';
    const clients = [t.promotionalCredits, t.replica.promotionalCredits];
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 100_000n });
    const deadlocks = () => deadlocksIn(t.server.dataSource);
    const before = await deadlocks();
    const random = (n: number) => Math.floor(Math.random() * n);
    // Lots and holds that end while the calls go on: writes settle them first.
    const soon = () => new Date(Date.now() + 50 + random(1500));
    const holds: Array<{ id: string; amount: bigint }> = [];
    const failures: string[] = [];
    // What the contract answers such writes (an expire_time may pass while a write waits for the balance).
    const refusals = new Set([
      'FAILED_PRECONDITION INSUFFICIENT_BALANCE {}',
      'FAILED_PRECONDITION HOLD_NOT_ACTIVE {}',
      'INVALID_ARGUMENT VALIDATION_FAILED {"expire_time":"must be in the future"}',
    ]);
    let reads = 0;
    let stop = false;
    const write = async (n: number) => {
      const pc = clients[n % 2]!;
      const k = random(10);
      if (k < 3) await pc.addPromotionalCredits({ ...base, customerId, amount: BigInt(1 + random(100)), expireTime: soon() });
      else if (k < 5) holds.push((await pc.holdPromotionalCredits({ ...base, customerId, amount: BigInt(1 + random(100)), expireTime: soon() })).hold!);
      else if (k < 7 || holds.length === 0) await pc.deductPromotionalCredits({ ...base, customerId, amount: BigInt(1 + random(50)) });
      else {
        const hold = holds[random(holds.length)]!;
        if (k < 9) await pc.capturePromotionalCreditHold({ holdId: hold.id, amount: 1n + BigInt(random(Number(hold.amount))) });
        else await pc.releasePromotionalCreditHold({ holdId: hold.id });
      }
    };
    const loop = async (call: () => Promise<unknown>, pause: number) => {
      while (!stop) {
        try {
          await call();
        } catch (err) {
          const { code, reason, fields } = decodeError(err as Parameters<typeof decodeError>[0]);
          const answer = `${status[code]} ${reason} ${JSON.stringify(fields)}`;
          if (!refusals.has(answer)) failures.push(answer);
        }
        await sleep(random(pause));
      }
    };
    const calls = [
      ...Array.from({ length: 12 }, (_, n) => loop(() => write(n), 30)),
      ...Array.from({ length: 8 }, (_, n) =>
        loop(async () => {
          await clients[n % 2]!.getCustomerBalance({ customerId, asOfTime: new Date(Date.now() - random(4)) });
          reads++;
        }, 20),
      ),
    ];
    await sleep(6000);
    stop = true;
    await Promise.all(calls);
    // A server process's connection reports its deadlocks to the statistics within a second of going idle.
    await sleep(1500);
    expect(failures, 'calls that failed').to.deep.equal([]);
    expect(reads, 'reads as of an instant').to.be.above(100);
    expect((await deadlocks()) - before, 'deadlocks in the database (writes retry theirs unseen)').to.equal(0);
    expect(await ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
  });

  it('takes few pooled connections to wait: with more reads of one customer waiting than the pool has connections, other calls are answered', async function () {
    this.timeout(30_000);
    const pc = t.promotionalCredits;
    await pc.addPromotionalCredits({ ...base, customerId: 'a-cust', amount: 100n });
    await pc.addPromotionalCredits({ ...base, customerId: 'c-cust', amount: 7n });
    let waiting: Array<Watched<Record<string, bigint>>> = [];
    const { at } = await readWhileInFlight(
      'a-cust',
      () => [pc.addPromotionalCredits({ ...base, customerId: 'a-cust', amount: 50n }, keyed())],
      async (_read, at) => {
        // The shared test server's pool has 20 connections (review: readers waiting on them stalled every call).
        waiting = Array.from({ length: 30 }, () => watched(asOf('a-cust', at)));
        await sleep(300);
        expect(await asOf('c-cust', new Date()), 'a read of another customer').to.deep.equal({ USD: 7n });
        expect((await pc.addPromotionalCredits({ ...base, customerId: 'c-cust', amount: 1n })).balance!.balances[0]!.amount, 'a write').to.equal(8n);
        expect(
          waiting.filter((w) => w.settled()),
          'the reads still wait',
        ).to.deep.equal([]);
      },
    );
    for (const w of waiting) expect(await w.promise).to.deep.equal({ USD: 150n });
    expect(await asOf('a-cust', at)).to.deep.equal({ USD: 150n });
  });

  it("leaves no balance row behind when a customer's first Add is refused at the write (its expire_time passed while it waited)", async function () {
    this.timeout(30_000);
    const pc = t.promotionalCredits;
    const customerId = 'never-credited';
    // Another transaction inserting the same row: the Add waits for it past its expire_time.
    const runner = t.server.dataSource.createQueryRunner();
    await runner.startTransaction();
    let add: Watched<unknown>;
    try {
      await runner.query(`INSERT INTO promotional_credit_balances (tenant_id, customer_id, currency_code, amount) VALUES ($1, $2, 'USD', 0)`, [
        t.tenant.id,
        customerId,
      ]);
      add = watched(pc.addPromotionalCredits({ ...base, customerId, amount: 100n, expireTime: new Date(Date.now() + 300) }));
      await sleep(600);
      expect(add.settled(), 'the Add waits for the row').to.equal(false);
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
    const refused = await expectError(add!.promise, status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(refused.fields).to.deep.equal({ expire_time: 'must be in the future' });
    expect(shapeOf((await pc.getCustomerBalance({ customerId })).balance?.balances), 'live').to.deep.equal({});
    expect(await asOf(customerId, new Date()), 'as of now').to.deep.equal({});
    const rows = (await t.server.dataSource.query(`SELECT count(*)::int AS n FROM promotional_credit_balances WHERE tenant_id = $1`, [t.tenant.id])) as Array<{ n: number }>;
    expect(rows[0]!.n, 'no balance row').to.equal(0);
  });
});
