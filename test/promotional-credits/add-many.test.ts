import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { PoolClient } from 'pg';
import { Origin } from '../../gen/credits/v1/promotional_credit_service';
import { uuidV7 } from '../../src/common/uuid-v7';
import { eventually } from '../support/eventually';
import { applyItem, balanceLockOwners, expectChained, ledgerOf, ledgerProblemsOf, type ApplyItem } from '../support/ledger';
import { useTenantClients } from '../support/tenant-clients';
import { UUID_V4, UUID_V7 } from '../support/uuid-v7';

/**
 * A group of Adds is written in one statement per table
 * (promotional_credit_add_many) when it can be written exactly as its items
 * would be one by one (promotional_credit_apply_one), and one by one
 * otherwise. Which way a group went is read from PostgreSQL's function
 * statistics (track_functions, a superuser setting, as the tests' own
 * database user is): apply_one's calls in the transaction.
 */
describe('a group of Adds in one statement per table', () => {
  const t = useTenantClients({ replica: true });
  const base = { description: 'many', currencyCode: 'USD' };
  const inMs = (ms: number) => new Date(Date.now() + ms);
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const problems = () => ledgerProblemsOf(t.server.dataSource.manager, t.tenant.id);

  /** An item as the repository sends it; a field given as undefined is left out. */
  const write = (item: ApplyItem) => applyItem(t.tenant.id, Object.assign({ description: `group ${item.customer_id}` }, item));
  interface Row {
    item: number;
    outcome: string;
    reason: string | null;
    entry_id: string | null;
    entry_seq: string | null;
    entry_time: Date | null;
    entry_type: string | null;
    entry_origin: string | null;
    entry_amount: string | null;
    entry_expire_time: Date | null;
    entry_hash: string | null;
    entry_description: string | null;
    entry_credit_type: string | null;
    entry_reference: string | null;
    entry_metadata: Record<string, string> | null;
    entry_closing_balance: string | null;
    entry_allocations: unknown;
    entry_reverses_id: string | null;
    balance: string | null;
    held: string | null;
    hold: unknown;
    others: Array<{ c: string; a: string; h: string }> | null;
  }

  /**
   * Applies `items` in one transaction (after `first`, in it); answers the
   * rows and how many items apply_one wrote one by one.
   */
  async function apply(items: ApplyItem[], first?: (query: (sql: string, values: unknown[]) => Promise<unknown>) => Promise<void>): Promise<{ rows: Row[]; oneByOne: number }> {
    const runner = t.server.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      await runner.query(`SET LOCAL track_functions = 'pl'`);
      await first?.((sql, values) => runner.query(sql, values));
      // Counts not yet reported from the connection's earlier transactions show too: the difference is this call's.
      const calls = async () =>
        (
          await runner.query(
            `SELECT coalesce(sum(calls), 0)::int AS calls FROM pg_stat_xact_user_functions
              WHERE schemaname = current_schema() AND funcname = 'promotional_credit_apply_one'`,
          )
        )[0].calls as number;
      const callsBefore = await calls();
      const rows: Row[] = await runner.query(`SELECT * FROM promotional_credit_apply($1::jsonb) ORDER BY item`, [JSON.stringify(items.map(write))]);
      const oneByOne = (await calls()) - callsBefore;
      await runner.commitTransaction();
      return { rows, oneByOne };
    } finally {
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      await runner.release();
    }
  }
  /** Waits until some statement waits for a lock `runner`'s transaction holds. */
  async function blockedBy(runner: { query(sql: string): Promise<Array<{ pid: number }>> }): Promise<void> {
    const [{ pid }] = await runner.query(`SELECT pg_backend_pid() AS pid`);
    const waiting = await eventually(
      10_000,
      async () => ((await t.server.dataSource.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))`, [pid])) as Array<{ n: number }>)[0]!.n,
      (n) => n > 0,
    );
    expect(waiting, 'a statement waits for the other transaction').to.be.greaterThan(0);
  }
  const seed = async (customerId: string, amount: bigint, extra: Record<string, unknown> = {}) =>
    (await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount, ...extra })).promotionalCredit!;
  /** What an outcome says apart from what differs between two writes (ids, instants, hashes). */
  const shape = (r: Row) => ({
    outcome: r.outcome,
    reason: r.reason,
    type: r.entry_type,
    origin: r.entry_origin,
    amount: r.entry_amount,
    expire: r.entry_expire_time?.toISOString() ?? null,
    description: r.entry_description,
    creditType: r.entry_credit_type,
    reference: r.entry_reference,
    metadata: r.entry_metadata,
    allocations: r.entry_allocations,
    reverses: r.entry_reverses_id,
    hold: r.hold,
    others: r.others,
  });

  it('writes the entries, lots, balances and events the items would write one by one', async () => {
    const far = inMs(7 * 24 * 3_600_000);
    await seed('many-a', 10n);
    await seed('many-b', 20n, { expireTime: inMs(30 * 24 * 3_600_000) });
    await seed('many-c', 30n);
    await t.promotionalCredits.holdPromotionalCredits({ ...base, customerId: 'many-c', amount: 5n }); // held, its credits reserved
    await seed('many-d', 1n);
    const group: ApplyItem[] = [
      { op: 'ADD', customer_id: 'many-a', amount: '7', reference: 'order-1', metadata: { campaign: 'spring', 'é': 'ü' } },
      { op: 'ADD', customer_id: 'many-b', amount: '8', expire_time: far.toISOString(), credit_type: 'LOYALTY_CREDITS' },
      { op: 'ADD', customer_id: 'many-c', amount: '9', reference: undefined, metadata: undefined, validate_only: undefined, with_others: undefined },
    ];
    const together = await apply(group);
    expect(together.oneByOne, 'the group was written in one statement per table').to.equal(0);
    // The same group again, made to go one by one by a SETTLE item of a fourth balance.
    const alone = await apply([...group, { op: 'SETTLE', customer_id: 'many-d', amount: '0' }]);
    expect(alone.oneByOne, 'the group with a SETTLE went one by one').to.equal(4);

    expect(together.rows.map(shape), 'each item answers as one by one').to.deep.equal(alone.rows.slice(0, 3).map(shape));
    expect(together.rows.map((r) => [r.entry_closing_balance, r.balance, r.held])).to.deep.equal([
      ['17', '17', '0'],
      ['28', '28', '0'],
      ['39', '39', '5'],
    ]);
    expect(alone.rows.slice(0, 3).map((r) => [r.entry_closing_balance, r.balance, r.held])).to.deep.equal([
      ['24', '24', '0'],
      ['36', '36', '0'],
      ['48', '48', '5'],
    ]);
    const seqs = together.rows.map((r) => BigInt(r.entry_seq!));
    expect(seqs[0]! < seqs[1]! && seqs[1]! < seqs[2]!, 'entries numbered in the items’ order').to.equal(true);

    const db = t.server.dataSource;
    for (const { rows } of [together, alone]) {
      const ids = rows.slice(0, 3).map((r) => r.entry_id);
      const lots: Array<{ id: string; seq: string; amount: string; remaining: string; expire_time: Date | null; credit_type: string; create_time: Date }> =
        await db.query(
          `SELECT l.id, l.seq, l.amount, l.remaining, l.expire_time, l.credit_type, l.create_time
             FROM promotional_credit_lots l JOIN unnest($1::uuid[]) WITH ORDINALITY AS u (id, n) ON u.id = l.id ORDER BY u.n`,
          [ids],
        );
      expect(
        lots.map((l) => [l.id, l.seq, l.amount, l.remaining, l.expire_time?.toISOString() ?? null, l.credit_type, l.create_time.getTime()]),
        'each entry opened its lot',
      ).to.deep.equal(
        rows
          .slice(0, 3)
          .map((r) => [r.entry_id, r.entry_seq, r.entry_amount, r.entry_amount, r.entry_expire_time?.toISOString() ?? null, r.entry_credit_type, r.entry_time!.getTime()]),
      );
      const events: Array<{ type: string; customer_id: string; promotional_credit_id: string; create_time: Date }> = await db.query(
        `SELECT type, customer_id, promotional_credit_id, create_time FROM events
          WHERE tenant_id = $1 AND promotional_credit_id = ANY ($2::uuid[]) ORDER BY xid, position`,
        [t.tenant.id, ids],
      );
      expect(
        events.map((e) => [e.type, e.customer_id, e.promotional_credit_id, e.create_time.getTime()]),
        'one event per entry, in the items’ order',
      ).to.deep.equal(rows.slice(0, 3).map((r) => ['PROMOTIONAL_CREDIT_CREATED', `many-${'abc'[r.item - 1]}`, r.entry_id, r.entry_time!.getTime()]));
    }
    const [balance] = await db.query(
      `SELECT next_expire_time, last_hash, update_time FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = 'many-b'`,
      [t.tenant.id],
    );
    expect((balance.update_time as Date).getTime(), 'the balance was last written at its last entry’s instant').to.equal(alone.rows[1]!.entry_time!.getTime());
    expect((balance.next_expire_time as Date).toISOString(), 'the soonest lot’s expiry is the balance’s next').to.equal(far.toISOString());
    expect(balance.last_hash, 'the chain ends at the last entry').to.equal(alone.rows[1]!.entry_hash);
    for (const customerId of ['many-a', 'many-b', 'many-c']) expectChained(await ledgerOf(t.promotionalCredits, customerId), customerId);
    expect(await problems(), 'hash chains, balances, lots and holds audit clean').to.deep.equal([]);
  });

  it('writes a group’s entries, lots and events under the ids the service made, and makes them for items without', async () => {
    await seed('ids-a', 1n);
    await seed('ids-b', 1n);
    await seed('ids-c', 1n);
    const given = [0, 1, 2].map(() => ({ id: uuidV7(), event_id: randomUUID() }));
    const { rows, oneByOne } = await apply([
      { op: 'ADD', customer_id: 'ids-a', amount: '5', ...given[0] },
      { op: 'ADD', customer_id: 'ids-b', amount: '6' },
      { op: 'ADD', customer_id: 'ids-c', amount: '7', ...given[2] },
    ]);
    expect(oneByOne, 'the group was written in one statement per table').to.equal(0);
    expect(rows[0]!.entry_id).to.equal(given[0]!.id);
    expect(rows[2]!.entry_id).to.equal(given[2]!.id);
    const made = rows[1]!.entry_id!;
    expect(made, 'made by the statement: a UUIDv7').to.match(UUID_V7);
    const db = t.server.dataSource;
    const lots: Array<{ id: string }> = await db.query(`SELECT id FROM promotional_credit_lots WHERE id = ANY ($1::uuid[])`, [rows.map((r) => r.entry_id)]);
    expect(lots.map((l) => l.id).sort(), 'each lot under its entry’s id').to.deep.equal(rows.map((r) => r.entry_id!).sort());
    const events: Array<{ id: string; promotional_credit_id: string }> = await db.query(
      `SELECT id, promotional_credit_id FROM events WHERE tenant_id = $1 AND promotional_credit_id = ANY ($2::uuid[])`,
      [t.tenant.id, rows.map((r) => r.entry_id)],
    );
    const eventOf = new Map(events.map((e) => [e.promotional_credit_id, e.id]));
    expect(eventOf.get(given[0]!.id)).to.equal(given[0]!.event_id);
    expect(eventOf.get(given[2]!.id)).to.equal(given[2]!.event_id);
    expect(eventOf.get(made), 'an event id made by the statement').to.match(UUID_V4);

    // One by one (a SETTLE in the group), the entries' ids are made where they are written.
    const again = [0, 1].map(() => ({ id: uuidV7(), event_id: randomUUID() }));
    const alone = await apply([
      { op: 'ADD', customer_id: 'ids-a', amount: '5', ...again[0] },
      { op: 'SETTLE', customer_id: 'ids-b', amount: '0' },
      { op: 'ADD', customer_id: 'ids-c', amount: '7', ...again[1] },
    ]);
    expect(alone.oneByOne).to.equal(3);
    const written = alone.rows.filter((r) => r.entry_id !== null);
    expect(written).to.have.length(2);
    for (const r of written) expect(again.map((g) => g.id), 'not the ids given').to.not.include(r.entry_id);
    expect(await problems(), 'hash chains, balances, lots and holds audit clean').to.deep.equal([]);
  });

  it('goes one by one for a group that needs it, with the answers one by one gives', async function () {
    this.timeout(20_000);
    const max = 9223372036854775807n;
    const db = t.server.dataSource;
    const expiry = inMs(2_000);
    await seed('one-expiring', 4n, { expireTime: expiry });
    await seed('one-expiring', 6n);
    await seed('one-a', 10n);
    await seed('one-full', max - 5n);
    await seed('one-late', 3n);
    await seed('one-unreserved', 10n);
    const { hold } = await t.promotionalCredits.holdPromotionalCredits({ ...base, customerId: 'one-unreserved', amount: 4n });
    // As a database of definition version 12 holds it: a hold that reserves nothing.
    await db.query(`UPDATE promotional_credit_holds SET allocations = NULL WHERE id = $1`, [hold!.id]);
    await db.query(`UPDATE promotional_credit_lots SET reserved = 0 WHERE tenant_id = $1 AND customer_id = 'one-unreserved'`, [t.tenant.id]);

    // Its row locked before its first lot is due, so that the sweep (which skips locked rows) leaves it to the Add.
    const due = await apply([{ op: 'ADD', customer_id: 'one-expiring', amount: '1' }], async (query) => {
      await query(`SELECT 1 FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = 'one-expiring' FOR UPDATE`, [t.tenant.id]);
      await sleep(Math.max(0, expiry.getTime() - Date.now()) + 100);
    });
    expect(due.oneByOne, 'expirations due: one by one').to.equal(1);
    expect(due.rows.map((r) => [r.outcome, r.reason, r.entry_closing_balance])).to.deep.equal([['written', null, '7']]);

    const groups: Array<{ why: string; items: ApplyItem[]; expect: Array<[string, string | null, string | null]> }> = [
      {
        why: 'one balance twice',
        items: [
          { op: 'ADD', customer_id: 'one-a', amount: '5' },
          { op: 'ADD', customer_id: 'one-a', amount: '7' },
        ],
        expect: [
          ['written', null, '15'],
          ['written', null, '22'],
        ],
      },
      { why: 'a new customer', items: [{ op: 'ADD', customer_id: 'one-new', amount: '5' }], expect: [['written', null, '5']] },
      {
        why: 'no room below the limit',
        items: [
          { op: 'ADD', customer_id: 'one-a', amount: '1' },
          { op: 'ADD', customer_id: 'one-full', amount: '6' },
        ],
        expect: [
          ['written', null, '23'],
          ['refused', 'BALANCE_LIMIT_EXCEEDED', null],
        ],
      },
      {
        why: 'an expire_time past',
        items: [
          { op: 'ADD', customer_id: 'one-a', amount: '1' },
          { op: 'ADD', customer_id: 'one-late', amount: '2', expire_time: new Date(Date.now() - 1_000).toISOString() },
        ],
        expect: [
          ['written', null, '24'],
          ['refused', 'EXPIRE_TIME_PASSED', null],
        ],
      },
      {
        why: 'a refusal before a bad field',
        items: [
          { op: 'ADD', customer_id: 'one-a', amount: '1', expire_time: new Date(Date.now() - 1_000).toISOString(), metadata: 'not an object' },
          { op: 'ADD', customer_id: 'one-full', amount: '100', credit_type: 'NO_SUCH_TYPE' },
        ],
        expect: [
          ['refused', 'EXPIRE_TIME_PASSED', null],
          ['refused', 'BALANCE_LIMIT_EXCEEDED', null],
        ],
      },
      {
        why: 'no room, found once the rows are locked, before a bad field',
        items: [{ op: 'ADD', customer_id: 'one-full', amount: '100', credit_type: 'NO_SUCH_TYPE' }],
        expect: [['refused', 'BALANCE_LIMIT_EXCEEDED', null]],
      },
      { why: 'validate_only', items: [{ op: 'ADD', customer_id: 'one-a', amount: '100', validate_only: true }], expect: [['written', null, '124']] },
      { why: 'a hold that reserves nothing', items: [{ op: 'ADD', customer_id: 'one-unreserved', amount: '1' }], expect: [['written', null, '11']] },
    ];
    for (const group of groups) {
      const { rows, oneByOne } = await apply(group.items);
      expect(oneByOne, `${group.why}: one by one`).to.equal(group.items.length);
      expect(
        rows.map((r) => [r.outcome, r.reason, r.entry_closing_balance]),
        group.why,
      ).to.deep.equal(group.expect);
    }

    const expiring = await ledgerOf(t.promotionalCredits, 'one-expiring');
    expect(
      expiring.map((e) => [e.origin, e.amount]),
      'the lot due expired before the Add, in the same write',
    ).to.deep.equal([
      [Origin.ORIGIN_ADD, 4n],
      [Origin.ORIGIN_ADD, 6n],
      [Origin.ORIGIN_EXPIRATION, 4n],
      [Origin.ORIGIN_ADD, 1n],
    ]);
    expect((await ledgerOf(t.promotionalCredits, 'one-a')).map((e) => e.closingBalance), 'validate_only wrote nothing').to.deep.equal([10n, 15n, 22n, 23n, 24n]);
    const [reserved] = await db.query(`SELECT allocations FROM promotional_credit_holds WHERE id = $1`, [hold!.id]);
    expect(reserved.allocations, 'the Add reserved the hold’s credits first').to.have.length(1);
    const [full] = await db.query(`SELECT amount FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = 'one-full'`, [t.tenant.id]);
    expect(BigInt(full.amount)).to.equal(max - 5n);
    for (const customerId of ['one-a', 'one-new', 'one-expiring', 'one-unreserved']) expectChained(await ledgerOf(t.promotionalCredits, customerId), customerId);
    expect(await problems()).to.deep.equal([]);
  });

  it('answers a customer’s other currencies as one by one: before the group’s later items', async () => {
    await seed('others-a', 100n);
    await seed('others-a', 100n, { currencyCode: 'EUR' });
    await seed('others-b', 50n);
    await seed('others-b', 50n, { currencyCode: 'EUR' });
    const ofTwo = await apply([
      { op: 'ADD', customer_id: 'others-a', currency_code: 'EUR', amount: '5', with_others: true },
      { op: 'ADD', customer_id: 'others-a', currency_code: 'USD', amount: '7', with_others: true },
    ]);
    expect(ofTwo.oneByOne, 'two currencies of one customer, answering the others: one by one').to.equal(2);
    expect(ofTwo.rows.map((r) => r.others)).to.deep.equal([[{ c: 'USD', a: '100', h: '0' }], [{ c: 'EUR', a: '105', h: '0' }]]);
    const ofMany = await apply([
      { op: 'ADD', customer_id: 'others-a', currency_code: 'EUR', amount: '1', with_others: true },
      { op: 'ADD', customer_id: 'others-b', currency_code: 'USD', amount: '2', with_others: true },
    ]);
    expect(ofMany.oneByOne, 'one item per customer: in one statement per table').to.equal(0);
    expect(ofMany.rows.map((r) => [r.entry_closing_balance, r.others])).to.deep.equal([
      ['106', [{ c: 'USD', a: '107', h: '0' }]],
      ['52', [{ c: 'EUR', a: '50', h: '0' }]],
    ]);
    expect(await problems()).to.deep.equal([]);
  });

  it('locks nothing before a first write in a currency: no deadlock with a group that created that balance and goes on to a later one', async function () {
    this.timeout(20_000);
    // Items are sorted by balance key, so groups lock rows in one order. A
    // group [first write of A, Add to B] must not hold B while it waits for
    // another transaction's uncommitted insert of A: that transaction's next
    // statement may need B (A < B, the order every group takes).
    await seed('lock-b', 10n);
    const db = t.server.dataSource;
    const other = db.createQueryRunner();
    await other.connect();
    try {
      await other.startTransaction();
      const applyIn = (items: ApplyItem[]) => other.query(`SELECT outcome, reason FROM promotional_credit_apply($1::jsonb) ORDER BY item`, [JSON.stringify(items.map(write))]);
      expect(await applyIn([{ op: 'ADD', customer_id: 'lock-a', amount: '3' }])).to.deep.equal([{ outcome: 'written', reason: null }]);
      const group = apply([
        { op: 'ADD', customer_id: 'lock-a', amount: '4' },
        { op: 'ADD', customer_id: 'lock-b', amount: '5' },
      ]);
      await blockedBy(other); // the group now waits for lock-a's row
      expect(await applyIn([{ op: 'DEDUCT', customer_id: 'lock-b', amount: '1' }]), 'lock-b was not held by the waiting group').to.deep.equal([
        { outcome: 'written', reason: null },
      ]);
      await other.commitTransaction();
      const { rows, oneByOne } = await group;
      expect(oneByOne, 'a balance missing when the group began: one by one').to.equal(2);
      expect(rows.map((r) => [r.outcome, r.entry_closing_balance])).to.deep.equal([
        ['written', '7'],
        ['written', '14'],
      ]);
    } finally {
      if (other.isTransactionActive) await other.rollbackTransaction();
      await other.release();
    }
    expect(await problems()).to.deep.equal([]);
  });

  it('sees a hold left without reservations by a change it waited for', async () => {
    await seed('waited', 10n);
    const { hold } = await t.promotionalCredits.holdPromotionalCredits({ ...base, customerId: 'waited', amount: 4n });
    const db = t.server.dataSource;
    const other = db.createQueryRunner();
    await other.connect();
    let group: Promise<{ rows: Row[]; oneByOne: number }> | undefined;
    try {
      await other.startTransaction();
      // As a replica of definition version 12 leaves a hold (it reserves nothing), with the balance's row locked, as every writer does.
      await other.query(`SELECT 1 FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = 'waited' FOR UPDATE`, [t.tenant.id]);
      await other.query(`UPDATE promotional_credit_holds SET allocations = NULL WHERE id = $1`, [hold!.id]);
      await other.query(`UPDATE promotional_credit_lots SET reserved = 0 WHERE tenant_id = $1 AND customer_id = 'waited'`, [t.tenant.id]);
      group = apply([{ op: 'ADD', customer_id: 'waited', amount: '1' }]);
      await blockedBy(other); // the group now waits for the row
      await other.commitTransaction();
    } finally {
      if (other.isTransactionActive) await other.rollbackTransaction();
      await other.release();
    }
    const { rows, oneByOne } = await group!;
    expect(oneByOne, 'the hold was read after the lock: one by one, which reserves for it').to.equal(1);
    expect(rows.map((r) => [r.outcome, r.entry_closing_balance, r.held])).to.deep.equal([['written', '11', '4']]);
    const [reserved] = await db.query(`SELECT allocations FROM promotional_credit_holds WHERE id = $1`, [hold!.id]);
    expect(reserved.allocations, 'the hold reserves its credits again').to.have.length(1);
    expect(await problems()).to.deep.equal([]);
  });

  it('plans the statements of a one-Add group once per connection, not again on every call', async () => {
    // PostgreSQL reports each plan it makes (debug_print_plan, to this
    // client at client_min_messages = log). The session asks for a fresh
    // plan on every execution (force_custom_plan), as `auto` chose for a
    // one-Add group's INSERTs and UPDATE on a database of many balances
    // (the tests' has too few for it): the function plans its statements
    // once all the same (see the comment of promotional_credit_apply).
    await seed('plan-a', 1n);
    const runner = t.server.dataSource.createQueryRunner();
    const client = (await runner.connect()) as PoolClient;
    let planned = 0;
    const onNotice = (notice: { message?: string }) => {
      if (notice.message === 'plan:') planned++;
    };
    client.on('notice', onNotice);
    const plansPerCall: number[] = [];
    try {
      await runner.startTransaction();
      await runner.query(`SET LOCAL client_min_messages = log`);
      await runner.query(`SET LOCAL debug_print_plan = on`);
      await runner.query(`SET LOCAL plan_cache_mode = force_custom_plan`);
      for (let call = 0; call < 10; call++) {
        planned = 0;
        const { rows } = await client.query({
          name: 'test-one-add-plans',
          text: `SELECT outcome FROM promotional_credit_apply($1::jsonb)`,
          values: [JSON.stringify([write({ op: 'ADD', customer_id: 'plan-a', amount: '1' })])],
        });
        expect(rows, `call ${call + 1}`).to.deep.equal([{ outcome: 'written' }]);
        plansPerCall.push(planned);
      }
      await runner.commitTransaction();
    } finally {
      client.off('notice', onNotice);
      if (runner.isTransactionActive) await runner.rollbackTransaction();
      await runner.release();
    }
    // The prepared statement itself, outside the function, is planned on
    // every execution; the first call also plans what this pooled
    // connection has not run before.
    expect(plansPerCall.slice(1), 'plans made by calls 2-10: the call’s own statement only').to.deep.equal([1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect((await t.promotionalCredits.getCustomerBalance({ customerId: 'plan-a' })).balance!.balances[0]!.amount).to.equal(11n);
  });

  it('keeps every balance exact under Adds, first writes, Deducts and expiries raced over two servers and direct groups', async function () {
    this.timeout(120_000);
    const clients = [t.promotionalCredits, t.replica.promotionalCredits];
    const expected = new Map<string, bigint>(); // `${customer}/${currency}` → balance at the end
    const plus = (customerId: string, currencyCode: string, amount: bigint) =>
      expected.set(`${customerId}/${currencyCode}`, (expected.get(`${customerId}/${currencyCode}`) ?? 0n) + amount);
    const old = Array.from({ length: 20 }, (_, k) => `race-${String(k).padStart(2, '0')}`);
    const expiry = inMs(1_500);
    for (const customerId of old) {
      await seed(customerId, 100n);
      plus(customerId, 'USD', 100n);
    }
    // The first five also hold 50 that expire during the race (they get only Adds: Deducts would draw the expiring lot first).
    for (const customerId of old.slice(0, 5)) await seed(customerId, 50n, { expireTime: expiry });
    for (const customerId of old.slice(10, 15)) {
      await seed(customerId, 30n, { currencyCode: 'EUR' }); // a second currency: its groups answer the other currency too
      plus(customerId, 'EUR', 30n);
    }

    const calls: Array<Promise<unknown>> = [];
    for (let i = 0; i < 300; i++) {
      const pc = clients[i % 2]!;
      const kind = i % 6;
      if (kind <= 2) {
        const customerId = old[(i * 7) % 20]!;
        const amount = BigInt((i % 5) + 1);
        plus(customerId, 'USD', amount);
        calls.push(pc.addPromotionalCredits({ ...base, customerId, amount }));
      } else if (kind === 3) {
        const customerId = `race-new-${i % 25}`; // first writes in a currency, two or three racing for each
        const amount = BigInt((i % 3) + 1);
        plus(customerId, 'USD', amount);
        calls.push(pc.addPromotionalCredits({ ...base, customerId, amount }));
      } else if (kind === 4) {
        const customerId = old[5 + (i % 15)]!;
        plus(customerId, 'USD', -1n);
        calls.push(pc.deductPromotionalCredits({ ...base, customerId, amount: 1n }));
      } else {
        const customerId = old[10 + (i % 5)]!;
        plus(customerId, 'EUR', 2n);
        calls.push(pc.addPromotionalCredits({ ...base, customerId, amount: 2n, currencyCode: 'EUR' }));
      }
    }
    // Meanwhile, groups of 8 Adds of distinct balances sent straight to the write path, one at a time (each holds a pooled connection).
    const direct = (async () => {
      const ways: number[] = [];
      for (let g = 0; g < 12; g++) {
        const customers = [...new Set(Array.from({ length: 8 }, (_, k) => old[(g * 3 + k * 5) % 20]!))].sort();
        for (const customerId of customers) plus(customerId, 'USD', 3n);
        ways.push((await apply(customers.map((customerId) => ({ op: 'ADD', customer_id: customerId, amount: '3' })))).oneByOne);
      }
      return ways;
    })();
    await Promise.all(calls);
    const ways = await direct;
    expect(ways.filter((oneByOne) => oneByOne === 0), 'some direct groups were written in one statement per table').to.not.be.empty;

    await sleep(Math.max(0, expiry.getTime() - Date.now()) + 100);
    const customers = [...new Set([...expected.keys()].map((key) => key.split('/')[0]!))];
    for (const customerId of customers) {
      const balances = (await t.promotionalCredits.getCustomerBalance({ customerId })).balance!.balances;
      const answered = Object.fromEntries(balances.map((b) => [b.currencyCode, b.amount]));
      const wanted = Object.fromEntries([...expected].filter(([key]) => key.startsWith(`${customerId}/`)).map(([key, amount]) => [key.split('/')[1]!, amount]));
      expect(answered, `${customerId}: every Add and Deduct counted once, the expiring 50 gone`).to.deep.equal(wanted);
    }
    for (const customerId of customers) {
      const ledger = await ledgerOf(t.promotionalCredits, customerId);
      for (const currency of ['USD', 'EUR']) {
        const entries = ledger.filter((e) => e.currencyCode === currency);
        if (entries.length > 0) expectChained(entries, `${customerId} ${currency}`);
      }
    }
    expect(await problems(), 'hash chains, balances, lots and holds audit clean').to.deep.equal([]);
  });

  it('locks and writes the balances with one transaction id, so that their old versions get no MultiXact', async () => {
    // Locked by the group's subtransaction and written by its parent, the
    // balances got a MultiXact (see balanceLockOwners); locked and written
    // by one subtransaction, any lock left is the writer's own.
    await seed('mx-a', 1n);
    await seed('mx-b', 2n);
    const together = await apply([
      { op: 'ADD', customer_id: 'mx-a', amount: '3' },
      { op: 'ADD', customer_id: 'mx-b', amount: '4' },
    ]);
    expect(together.oneByOne, 'the group was written in one statement per table').to.equal(0);
    const versions = await balanceLockOwners(t.server.dataSource, t.tenant.id, ['mx-a', 'mx-b']);
    expect(versions.map((v) => [v.customerId, v.lockedByWriter]), 'no lock of another transaction id').to.deep.equal([
      ['mx-a', true],
      ['mx-b', true],
    ]);
  });
});
