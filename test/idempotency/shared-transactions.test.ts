import { status, type MethodDefinition } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { DomainError, ErrorReason } from '../../src/common/domain-error';
import type { SharedWork, WorkRunner } from '../../src/db/unit-of-work';
import { finalErrorOf } from '../../src/grpc/error-status';
import { Idempotency, type IdempotentOutcome } from '../../src/idempotency/idempotency';
import { IdempotencyRepository } from '../../src/idempotency/idempotency.repository';
import {
  PromotionalCreditRepository,
  type EntryDraft,
  type LedgerWrite,
  type LedgerWriteOutcome,
} from '../../src/promotional-credits/promotional-credit.repository';
import type { EntryType } from '../../src/promotional-credits/promotional-credit.entity';
import { openTestDataSource } from '../support/database';
import { ledgerWrite, ledgerProblemsOf } from '../support/ledger';
import { newTenant } from '../support/tenant';

/** What the test "method" answers: the entry written and the balance after it. */
interface Answer {
  entryId: string;
  closingBalance: string;
}

/** A method definition whose responses are JSON, so stored responses can be read back. */
const METHOD = {
  path: '/test.v1.Ledger/Change',
  requestStream: false,
  responseStream: false,
  requestSerialize: (request: unknown) => Buffer.from(JSON.stringify(request)),
  requestDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
  responseSerialize: (response: Answer) => Buffer.from(JSON.stringify(response)),
  responseDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as Answer,
} as MethodDefinition<unknown, Answer>;

const LEDGER: SharedWork<LedgerWrite, LedgerWriteOutcome> = {
  runAll: (manager, writes) => new PromotionalCreditRepository(manager).apply(writes),
  wrote: (outcome) => outcome.written !== undefined,
};

/**
 * Keyed calls that share one transaction (Idempotency.execute with `shared`,
 * what keyed Add/Deduct calls use), against the real database: calls made in
 * one turn of the event loop form one group, so what shares a transaction is
 * known here, unlike through the network.
 */
describe('idempotency: keyed calls sharing a transaction', () => {
  let dataSource: DataSource;
  let idempotency: Idempotency;
  let tenantId: string;

  before(async () => {
    dataSource = await openTestDataSource(8);
    idempotency = new Idempotency(dataSource, 24, finalErrorOf);
  });
  after(async () => {
    await dataSource.destroy();
  });
  beforeEach(async () => {
    tenantId = (await newTenant(dataSource)).id;
  });

  function write(customerId: string, type: EntryType, amount: bigint, extra: Partial<EntryDraft> = {}): LedgerWrite {
    return ledgerWrite(tenantId, customerId, type, amount, { extra, doneBy: 'shared-test', withOtherCurrencies: false });
  }


  /** The use case: one submitted balance change, refused with INSUFFICIENT_BALANCE when the guard does not hold. */
  async function change(run: WorkRunner, w: LedgerWrite): Promise<Answer> {
    const outcome = await run.submit(LEDGER, w);
    if ('balance' in outcome) throw new DomainError(ErrorReason.InsufficientBalance, `balance ${outcome.balance}`, [], { balance: outcome.balance.toString() });
    if (!outcome.written) throw new Error('an ADD or DEDUCT always writes or is refused');
    return { entryId: outcome.written.entry.id, closingBalance: outcome.written.entry.closingBalance.toString() };
  }

  function keyed(key: string, w: LedgerWrite, handler: (run: WorkRunner) => Promise<Answer> = (run) => change(run, w)): Promise<IdempotentOutcome<Answer>> {
    const request = { op: w.op, customerId: w.draft.customerId, amount: w.amount!.toString(), description: w.draft.description };
    return idempotency.execute({ tenantId, key, definition: METHOD, request }, handler, { shared: true });
  }

  async function xminsOf(table: 'idempotency_keys' | 'promotional_credits', keys: string[]): Promise<Set<string>> {
    const column = table === 'idempotency_keys' ? 'key' : 'description';
    const rows: Array<{ xmin: string }> = await dataSource.query(`SELECT xmin::text AS xmin FROM ${table} WHERE tenant_id = $1 AND ${column} = ANY($2)`, [
      tenantId,
      keys,
    ]);
    return new Set(rows.map((r) => r.xmin));
  }

  async function balanceOf(customerId: string): Promise<bigint> {
    const rows: Array<{ amount: string }> = await dataSource.query(
      `SELECT amount FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2 AND currency_code = 'USD'`,
      [tenantId, customerId],
    );
    return BigInt(rows[0]?.amount ?? 0);
  }

  const answerOf = (outcome: IdempotentOutcome<Answer>) => ('response' in outcome ? outcome.response : undefined);

  it('commits calls that arrive together in ONE transaction, with one statement for their balance changes, and replays each', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `k-${i}`);
    const outcomes = await Promise.all(keys.map((key, i) => keyed(key, write(`c${i % 3}`, 'INCREMENT', 100n, { description: key }))));
    expect(outcomes.every((o) => !o.replayed && 'response' in o)).to.equal(true);
    expect((await xminsOf('idempotency_keys', keys)).size).to.equal(1);
    expect([...(await xminsOf('promotional_credits', keys))]).to.deep.equal([...(await xminsOf('idempotency_keys', keys))]);
    // Writes on one balance keep their order: c0 got 100, 200, 300, 400.
    const c0 = outcomes.filter((_, i) => i % 3 === 0).map((o) => answerOf(o)!.closingBalance);
    expect(c0).to.deep.equal(['100', '200', '300', '400']);

    const replays = await Promise.all(keys.map((key, i) => keyed(key, write(`c${i % 3}`, 'INCREMENT', 100n, { description: key }))));
    replays.forEach((replay, i) => {
      expect(replay.replayed).to.equal(true);
      expect(answerOf(replay)).to.deep.equal(answerOf(outcomes[i]!));
    });
    expect(await balanceOf('c0')).to.equal(400n);
  });

  it('answers each call of one group on its own: replayed, reused, twice in the group, refused and stored, failed without a record', async () => {
    const done = await keyed('done', write('a', 'INCREMENT', 50n));
    await keyed('reused', write('a', 'INCREMENT', 1n));
    const [replayed, reused, twiceFirst, twiceSecond, refused, transient, fresh] = await Promise.allSettled([
      keyed('done', write('a', 'INCREMENT', 50n)),
      keyed('reused', write('a', 'INCREMENT', 2n)),
      keyed('twice', write('b', 'INCREMENT', 7n)),
      keyed('twice', write('b', 'INCREMENT', 7n)),
      keyed('refused', write('a', 'DECREMENT', 1_000n)),
      keyed('transient', write('b', 'INCREMENT', 3n), async () => {
        throw new DomainError(ErrorReason.ConcurrencyConflict, 'try again');
      }),
      keyed('fresh', write('b', 'INCREMENT', 10n)),
    ]);
    const value = <T>(r: PromiseSettledResult<T>) => (r as PromiseFulfilledResult<T>).value;
    const reason = (r: PromiseSettledResult<unknown>) => ((r as PromiseRejectedResult).reason as DomainError).reason;

    expect(value(replayed).replayed).to.equal(true);
    expect(answerOf(value(replayed))).to.deep.equal(answerOf(done));
    expect(reason(reused)).to.equal(ErrorReason.IdempotencyKeyReused);
    expect(answerOf(value(twiceFirst))!.closingBalance).to.equal('7');
    expect(reason(twiceSecond)).to.equal(ErrorReason.IdempotencyKeyInUse);
    const refusedOutcome = value(refused);
    expect('error' in refusedOutcome && refusedOutcome.error.reason).to.equal(ErrorReason.InsufficientBalance);
    expect('error' in refusedOutcome && refusedOutcome.error.code).to.equal(status.FAILED_PRECONDITION);
    expect(reason(transient)).to.equal(ErrorReason.ConcurrencyConflict);
    expect(answerOf(value(fresh))!.closingBalance).to.equal('17');
    expect(await balanceOf('a')).to.equal(51n);
    expect(await balanceOf('b')).to.equal(17n);

    // The refusal was stored and is replayed without running again; the
    // transient failure left no record, so its key runs when retried.
    const refusedAgain = await keyed('refused', write('a', 'DECREMENT', 1_000n));
    expect(refusedAgain.replayed).to.equal(true);
    expect('error' in refusedAgain && refusedAgain.error.reason).to.equal(ErrorReason.InsufficientBalance);
    const retried = await keyed('transient', write('b', 'INCREMENT', 3n));
    expect(retried.replayed).to.equal(false);
    expect(answerOf(retried)!.closingBalance).to.equal('20');
    expect((await xminsOf('idempotency_keys', ['twice', 'refused', 'fresh'])).size).to.equal(1);
  });

  it('answers IDEMPOTENCY_KEY_IN_USE for a key another transaction holds, and runs the rest of the group', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const holding = new Promise<void>((resolve) => (started = resolve));
    // Not shared: its own transaction holds the key until released.
    const first = idempotency.execute(
      { tenantId, key: 'busy', definition: METHOD, request: { n: 1 } },
      async (run) => {
        started();
        await held;
        return change(run, write('h', 'INCREMENT', 5n));
      },
    );
    await holding;
    const [busy, other] = await Promise.allSettled([keyed('busy', write('h', 'INCREMENT', 5n)), keyed('other', write('h', 'INCREMENT', 1n))]);
    expect(((busy as PromiseRejectedResult).reason as DomainError).reason).to.equal(ErrorReason.IdempotencyKeyInUse);
    expect(answerOf((other as PromiseFulfilledResult<IdempotentOutcome<Answer>>).value)!.closingBalance).to.equal('1');
    release();
    expect(answerOf(await first)!.closingBalance).to.equal('6');
  });

  it('replays a finished call to retries that arrive together, and while another transaction holds its key', async () => {
    const done = await keyed('finished', write('f', 'INCREMENT', 9n));
    // Three copies in one group: each gets the stored answer (the later ones used to get IN_USE).
    const copies = await Promise.all([1, 2, 3].map(() => keyed('finished', write('f', 'INCREMENT', 9n))));
    for (const copy of copies) {
      expect(copy.replayed).to.equal(true);
      expect(answerOf(copy)).to.deep.equal(answerOf(done));
    }
    // Another transaction holds the key's lock (a retry reading the record, alone): answered from the record too.
    const holder = dataSource.createQueryRunner();
    await holder.connect();
    try {
      await holder.startTransaction();
      expect(await new IdempotencyRepository(holder.manager).tryLock(tenantId, 'finished')).to.equal(true);
      const shared = await keyed('finished', write('f', 'INCREMENT', 9n));
      expect(shared.replayed).to.equal(true);
      const alone = await idempotency.execute(
        { tenantId, key: 'finished', definition: METHOD, request: { op: 'ADD', customerId: 'f', amount: '9', description: 'x' } },
        () => Promise.reject(new Error('must not run')),
      ).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect((alone as DomainError).reason, 'another request under the key: REUSED, not IN_USE').to.equal(ErrorReason.IdempotencyKeyReused);
    } finally {
      await holder.rollbackTransaction();
      await holder.release();
    }
    expect(await balanceOf('f')).to.equal(9n);
  });

  it('commits plain work of a call with its groupmates, and runs the group again when plain work then fails', async () => {
    // Plain work (not coalesced), as DeductPromotionalCredits without an amount does.
    const plain = (w: LedgerWrite, fail: boolean) => async (run: WorkRunner) => {
      const [outcome] = await run.statement((m) => new PromotionalCreditRepository(m).apply([w]));
      if (fail) throw new DomainError(ErrorReason.ValidationFailed, 'refused after plain work');
      return { entryId: outcome!.written!.entry.id, closingBalance: outcome!.written!.entry.closingBalance.toString() };
    };
    const together = await Promise.all([keyed('p-1', write('p', 'INCREMENT', 1n)), keyed('p-2', write('p', 'INCREMENT', 2n), plain(write('p', 'INCREMENT', 2n), false))]);
    // The plain work runs at once, the coalesced change at the end of the turn: p-2 first.
    expect(together.map((o) => answerOf(o)!.closingBalance)).to.deep.equal(['3', '2']);
    expect((await xminsOf('idempotency_keys', ['p-1', 'p-2'])).size).to.equal(1);

    const apart = await Promise.all([keyed('p-3', write('p', 'INCREMENT', 4n)), keyed('p-4', write('p', 'INCREMENT', 100n), plain(write('p', 'INCREMENT', 100n), true))]);
    expect(answerOf(apart[0]!)!.closingBalance).to.equal('7');
    expect('error' in apart[1]! && apart[1].error.reason).to.equal(ErrorReason.ValidationFailed);
    expect(await balanceOf('p')).to.equal(7n);
    expect((await xminsOf('idempotency_keys', ['p-3', 'p-4'])).size).to.equal(2);
  });

  it('runs the group again call by call when a call fails after it wrote; its write is taken back, its error stored', async () => {
    const outcomes = await Promise.all([
      keyed('ok-1', write('w', 'INCREMENT', 10n)),
      keyed('wrote-then-failed', write('w', 'INCREMENT', 1_000n), async (run) => {
        await change(run, write('w', 'INCREMENT', 1_000n));
        throw new DomainError(ErrorReason.ValidationFailed, 'refused after writing');
      }),
      keyed('ok-2', write('w', 'INCREMENT', 20n)),
    ]);
    expect(answerOf(outcomes[0]!)).to.not.equal(undefined);
    expect(answerOf(outcomes[2]!)).to.not.equal(undefined);
    const failed = outcomes[1]!;
    expect('error' in failed && failed.error.reason).to.equal(ErrorReason.ValidationFailed);
    expect(await balanceOf('w')).to.equal(30n);
    // Each ran in a transaction of its own.
    expect((await xminsOf('idempotency_keys', ['ok-1', 'wrote-then-failed', 'ok-2'])).size).to.equal(3);
    const replay = await keyed('wrote-then-failed', write('w', 'INCREMENT', 1_000n));
    expect(replay.replayed).to.equal(true);
    expect('error' in replay && replay.error.reason).to.equal(ErrorReason.ValidationFailed);
    expect(await balanceOf('w')).to.equal(30n);
  });

  it('lets a write PostgreSQL rejects fail alone: its groupmates commit', async () => {
    const [good, bad, alsoGood] = await Promise.allSettled([
      keyed('good', write('n', 'INCREMENT', 4n)),
      keyed('bad', write('n', 'INCREMENT', 8n, { description: 'nul \u0000 byte' })),
      keyed('also-good', write('n', 'INCREMENT', 16n)),
    ]);
    expect(good.status).to.equal('fulfilled');
    expect(alsoGood.status).to.equal('fulfilled');
    expect(bad.status).to.equal('rejected');
    expect(await balanceOf('n')).to.equal(20n);
    const stored: Array<{ key: string }> = await dataSource.query(`SELECT key FROM idempotency_keys WHERE tenant_id = $1 ORDER BY key`, [tenantId]);
    expect(stored.map((r) => r.key)).to.deep.equal(['also-good', 'good']);
  });

  it('keeps the ledger exact under 300 keyed adds and deducts on two hot balances, retried keys included', async function () {
    this.timeout(60_000);
    const calls = Array.from({ length: 300 }, (_, i) => {
      const customer = i % 2 === 0 ? 'hot-1' : 'hot-2';
      const w = i % 3 === 0 ? write(customer, 'DECREMENT', 25n) : write(customer, 'INCREMENT', 10n);
      return { key: `h-${i % 250}`, w };
    });
    // Keys 0-49 are sent twice (as retries would); the second copy carries the first's request.
    const firstOf = new Map<string, LedgerWrite>();
    for (const c of calls) if (!firstOf.has(c.key)) firstOf.set(c.key, c.w);
    const results = await Promise.allSettled(calls.map((c) => keyed(c.key, firstOf.get(c.key)!)));
    const effects = new Map<string, Answer>();
    for (const [i, r] of results.entries()) {
      if (r.status === 'rejected') {
        expect((r.reason as DomainError).reason).to.equal(ErrorReason.IdempotencyKeyInUse);
        continue;
      }
      const answer = answerOf(r.value);
      if (answer && !r.value.replayed) {
        expect(effects.has(calls[i]!.key), `key ${calls[i]!.key} applied twice`).to.equal(false);
        effects.set(calls[i]!.key, answer);
      }
    }
    const entries: Array<{ n: string }> = await dataSource.query(`SELECT count(*) AS n FROM promotional_credits WHERE tenant_id = $1`, [tenantId]);
    expect(Number(entries[0]!.n)).to.equal(effects.size);
    expect(await ledgerProblemsOf(dataSource.manager, tenantId)).to.deep.equal([]);
    // Every key now replays the outcome it committed.
    for (const [key, answer] of effects) expect(answerOf(await keyed(key, firstOf.get(key)!))).to.deep.equal(answer);
  });
});
