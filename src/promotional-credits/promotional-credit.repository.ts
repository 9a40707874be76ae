import { createHash, randomUUID } from 'node:crypto';
import type { EntityManager } from 'typeorm';
import { likePrefix, type StringFilter, type TimeWindow } from '../common/list-filters';
import type { Metadata } from '../common/metadata';
import { uuidV7 } from '../common/uuid-v7';
import { preparedQuery } from '../db/prepared-query';
import { allocationsFromJson, PromotionalCreditEntity, type CreditType, type EntryType, type Origin } from './promotional-credit.entity';
import { READ_ENTRIES, RECENT_ENTRIES } from './recent-entries';

/** A customer's balance in one currency: `held` of `amount` is reserved by active holds. */
export interface Balance {
  currencyCode: string;
  amount: bigint;
  held: bigint;
}

/** What to write with a ledger entry or a hold; its amount, balance and id come from the database. */
export interface EntryDraft {
  tenantId: string;
  customerId: string;
  currencyCode: string;
  description: string;
  creditType: CreditType;
  reference: string;
  doneBy: string;
  metadata: Metadata;
}

/** An entry just written and the customer's balances after it. */
export interface EntryWithBalances {
  entry: PromotionalCreditEntity;
  balances: Balance[];
}

/** One customer's balances to read as readers see them now (see balancesOfMany). */
export interface BalanceRead {
  tenantId: string;
  customerId: string;
}

/** One hold to read by id (see holdsOfMany). */
export interface HoldRead {
  tenantId: string;
  id: string;
}

/** One page of ListPromotionalCredits to read (see listMany). */
export interface PageRead {
  tenantId: string;
  filter: LedgerFilter;
  /** Entries strictly older than this (the page token's cursor); undefined: from the newest. */
  beforeSeq: bigint | undefined;
  limit: number;
}

export interface LedgerFilter {
  id?: StringFilter;
  customerId?: StringFilter;
  /** Allowed entry types; undefined means any, empty means none. */
  types?: EntryType[];
  /** Allowed origins (null: unspecified); undefined means any, empty means none. */
  origins?: Array<Origin | null>;
  /** Pairs an entry's metadata must all have. */
  metadata?: Metadata;
  createTime: TimeWindow;
}

export type HoldStatus = 'ACTIVE' | 'CAPTURED' | 'RELEASED' | 'EXPIRED';

/** A hold as stored; its status as read at a given instant is holdStatusAt. */
export interface HoldRecord {
  id: string;
  seq: bigint;
  tenantId: string;
  customerId: string;
  currencyCode: string;
  amount: bigint;
  capturedAmount: bigint;
  status: HoldStatus;
  description: string;
  reference: string;
  metadata: Metadata;
  doneBy: string;
  expireTime: Date;
  createTime: Date;
  updateTime: Date;
}

/** What is left of one INCREMENT. */
export interface LotRecord {
  id: string;
  seq: bigint;
  customerId: string;
  currencyCode: string;
  amount: bigint;
  remaining: bigint;
  expireTime: Date | null;
  creditType: CreditType;
  createTime: Date;
}

/**
 * How a change computes from the locked balance (see
 * sql/promotional-credit-apply.sql for each op).
 */
export type LedgerOp = 'ADD' | 'DEDUCT' | 'DEDUCT_ALL' | 'SET' | 'REVERSE' | 'HOLD' | 'CAPTURE' | 'RELEASE' | 'SETTLE';

/** Why the write path refused a change; nothing was written. */
export type LedgerRefusal =
  | 'INSUFFICIENT_BALANCE'
  | 'BALANCE_LIMIT_EXCEEDED'
  | 'NOT_FOUND'
  | 'NOT_REVERSIBLE'
  | 'ALREADY_REVERSED'
  | 'NOTHING_TO_REVERSE'
  | 'HOLD_NOT_ACTIVE'
  | 'CAPTURE_EXCEEDS_HOLD'
  | 'EXPIRE_TIME_PASSED';

/** A balance change to apply through the one guarded write path. */
export interface LedgerWrite {
  op: LedgerOp;
  /** ADD/DEDUCT/HOLD: the amount; SET: the target; CAPTURE: the amount or undefined (all); others: unused. */
  amount?: bigint | undefined;
  draft: EntryDraft;
  /** ADD/SET: when the new lot expires; HOLD: when the hold does. */
  expireTime?: Date | undefined;
  /** REVERSE: the entry; CAPTURE/RELEASE: the hold. */
  targetId?: string | undefined;
  /** Run every check and answer what would be written, but write nothing. */
  validateOnly?: boolean | undefined;
  /** Also answer the customer's balances in the other currencies (multi-currency tenants). */
  withOtherCurrencies: boolean;
  /**
   * REVERSE/CAPTURE/RELEASE: the balance is the target's, which the write
   * path reads in the same statement (no round trip of its own before the
   * write); the draft's customerId and currencyCode are then '' and unused,
   * and the outcome answers the balance's.
   */
  balanceOfTarget?: boolean | undefined;
}

/**
 * What applying a LedgerWrite did: the entry written and the balances; or,
 * when the write path refused it, nothing written and why, with the balance
 * as it stands; or, when there was nothing to write (SET to the current
 * value, DEDUCT_ALL of nothing, HOLD, RELEASE), the balances. Hold ops also
 * answer the hold.
 */
export type LedgerWriteOutcome = { hold?: HoldRecord | undefined } & (
  | { written: EntryWithBalances }
  /** customerId, currencyCode: the balance's ('' when the target of a balanceOfTarget write was not found). */
  | { written: undefined; refused: LedgerRefusal; balance: bigint; held: bigint; customerId: string; currencyCode: string }
  | { written: undefined; unchanged: Balance[] }
);

/** The write path itself: src/promotional-credits/sql/promotional-credit-apply.sql. */
const APPLY_SQL = `SELECT item, outcome, reason, entry_id, entry_seq, entry_time, entry_type, entry_origin, entry_amount, entry_expire_time,
       entry_allocations, entry_hash, entry_reverses_id, entry_description, entry_credit_type, entry_reference, entry_metadata,
       entry_closing_balance, customer_id, currency_code, balance, held, hold, others
  FROM promotional_credit_apply($1::jsonb)`;

interface ApplyRow {
  item: number;
  outcome: 'written' | 'unchanged' | 'refused';
  reason: LedgerRefusal | null;
  entry_id: string | null;
  entry_seq: string | null;
  entry_time: Date | null;
  entry_type: EntryType | null;
  entry_origin: Origin | null;
  entry_amount: string | null;
  entry_expire_time: Date | null;
  entry_allocations: Array<{ lot_id: string; amount: string }> | null;
  entry_hash: string | null;
  entry_reverses_id: string | null;
  entry_description: string | null;
  entry_credit_type: CreditType | null;
  entry_reference: string | null;
  entry_metadata: Metadata | null;
  entry_closing_balance: string | null;
  /** The item's balance: NULL only when a balanceOfTarget write's target was not found. */
  customer_id: string | null;
  currency_code: string | null;
  balance: string | null;
  held: string | null;
  hold: HoldJson | null;
  others: Array<{ c: string; a: string; h: string }> | null;
}

/** A hold as promotional_credit_hold_json answers it. */
export interface HoldJson {
  id: string;
  seq: string;
  customer_id: string;
  currency_code: string;
  amount: string;
  captured_amount: string;
  status: HoldStatus;
  description: string;
  reference: string;
  metadata: Metadata;
  done_by: string;
  expire_time: string;
  create_time: string;
  update_time: string;
}

/** Every column of an entry, from `promotional_credits e`, as entryOfRow reads them (also for joins: events). */
export const ENTRY_COLUMNS = `e.id, e.seq, e.tenant_id, e.customer_id, e.currency_code, e.type, e.amount, e.description, e.credit_type, e.reference,
  e.closing_balance, e.done_by, e.create_time, e.origin, e.expire_time, e.allocations, e.reverses_id, e.metadata, e.hash`;

export interface EntryRow {
  id: string;
  seq: string;
  tenant_id: string;
  customer_id: string;
  currency_code: string;
  type: EntryType;
  amount: string;
  description: string;
  credit_type: CreditType;
  reference: string;
  closing_balance: string;
  done_by: string;
  create_time: Date;
  origin: Origin | null;
  expire_time: Date | null;
  allocations: Array<{ lot_id: string; amount: string }> | null;
  reverses_id: string | null;
  metadata: Metadata;
  hash: string | null;
}

export class PromotionalCreditRepository {
  constructor(private readonly manager: EntityManager) {}

  /**
   * Applies the writes in ONE statement: each takes its balance row's lock
   * and computes from it, so a lock lasts one round trip however many writes
   * share it. Rows are locked in balance-key order (the writes are sorted,
   * stably, so that writes on one balance keep their order; the statement
   * puts those of balanceOfTarget in their place), which keeps concurrent
   * batches from deadlocking. Outcomes come back in the order of
   * `writes`; the entries written are kept in RECENT_ENTRIES for the
   * outbox's readers.
   */
  async apply(writes: LedgerWrite[]): Promise<LedgerWriteOutcome[]> {
    const order = writes.map((_, i) => i).sort((a, b) => compareBalanceKeys(writes[a]!.draft, writes[b]!.draft) || a - b);
    const items = order.map((i) => {
      const w = writes[i]!;
      const { draft } = w;
      const written = w.op === 'ADD' && w.validateOnly !== true;
      return {
        op: w.op,
        tenant_id: draft.tenantId,
        customer_id: w.balanceOfTarget ? undefined : draft.customerId,
        currency_code: w.balanceOfTarget ? undefined : draft.currencyCode,
        amount: w.amount?.toString(),
        description: draft.description,
        credit_type: draft.creditType,
        reference: draft.reference,
        done_by: draft.doneBy,
        metadata: draft.metadata,
        expire_time: w.expireTime?.toISOString(),
        target_id: w.targetId,
        validate_only: w.validateOnly === true,
        with_others: w.withOtherCurrencies,
        // An ADD's entry and event ids, made here (see the SQL): add_many takes them.
        id: written ? uuidV7() : undefined,
        event_id: written ? randomUUID() : undefined,
      };
    });
    const { rows } = await preparedQuery<ApplyRow>(this.manager, 'promotional_credit_apply', APPLY_SQL, [JSON.stringify(items)]);
    const outcomes = new Array<LedgerWriteOutcome>(writes.length);
    for (const row of rows) {
      const index = order[row.item - 1]!;
      const outcome = (outcomes[index] = outcomeOf(writes[index]!, row));
      if (outcome.written) RECENT_ENTRIES.remember(outcome.written.entry);
    }
    return outcomes;
  }

  /**
   * Settles up to `maxBalances` balances with expirations due (the
   * background sweep, safe with any number of replicas); answers how many.
   */
  async sweepExpired(maxBalances: number): Promise<number> {
    const { rows } = await preparedQuery<{ settled: number }>(this.manager, 'promotional_credit_sweep', `SELECT promotional_credit_sweep($1) AS settled`, [
      maxBalances,
    ]);
    return rows[0]!.settled;
  }

  /**
   * The balances of many customers (of any tenants) by currency code in ONE
   * prepared statement, as readers see them when it runs, by the database's
   * clock as the write path's (expired credits and holds left out even
   * before a write or the sweep settles them; a server's own `now`, taken
   * before the read waited for its group or a connection, counted credits
   * that expired meanwhile, and more of them on a server whose clock is
   * behind); answers one list per read, in the order of `reads`. Concurrent
   * GetCustomerBalance calls share it (see PromotionalCreditsService): a
   * round trip per call, not the read, was most of a call's cost.
   */
  async balancesOfMany(reads: readonly BalanceRead[]): Promise<Balance[][]> {
    const tenantIds = new Array<string>(reads.length);
    const customerIds = new Array<string>(reads.length);
    const answers = new Array<Balance[]>(reads.length);
    for (let i = 0; i < reads.length; i++) {
      const read = reads[i]!;
      tenantIds[i] = read.tenantId;
      customerIds[i] = read.customerId;
      answers[i] = [];
    }
    const { rows } = await preparedQuery<{ i: number; currency_code: string; amount: string; held: string }>(
      this.manager,
      'promotional_credit_balances_many',
      // promotional_credit_balance_at once per balance with expirations due,
      // never for the others: the WHERE becomes a one-time filter before the
      // call (OFFSET 0 keeps the subquery from being merged into the join,
      // where it filtered after calling), and (f(b)).amount, (f(b)).held
      // called it twice.
      `SELECT q.i::int AS i, b.currency_code, coalesce(due.amount, b.amount) AS amount, coalesce(due.held, b.held) AS held
         FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS q(tenant_id, customer_id, i)
         CROSS JOIN (SELECT date_trunc('milliseconds', clock_timestamp()) AS at) AS now
         JOIN promotional_credit_balances b ON b.tenant_id = q.tenant_id AND b.customer_id = q.customer_id
         LEFT JOIN LATERAL (SELECT d.amount, d.held FROM promotional_credit_balance_at(b, now.at) AS d WHERE b.next_expire_time <= now.at OFFSET 0) AS due ON true
        ORDER BY q.i, b.currency_code`,
      [tenantIds, customerIds],
    );
    for (const r of rows) answers[r.i - 1]!.push({ currencyCode: r.currency_code, amount: BigInt(r.amount), held: BigInt(r.held) });
    return answers;
  }

  /**
   * A customer's balances as they were at `at` (see
   * promotional_credit_balances_as_of), once the changes in flight on them
   * dated before it have committed: an answer no later commit changes
   * (promotional_credit_balances_as_of_final). It holds its connection
   * while it waits: see PromotionalCreditsService.balancesAsOf.
   */
  async balancesAsOf(tenantId: string, customerId: string, at: Date): Promise<Balance[]> {
    const { rows } = await preparedQuery<{ currency_code: string; amount: string; held: string }>(
      this.manager,
      'promotional_credit_balances_as_of_final',
      `SELECT currency_code, amount, held FROM promotional_credit_balances_as_of_final($1, $2, $3)`,
      [tenantId, customerId, at],
    );
    return rows.map((r) => ({ currencyCode: r.currency_code, amount: BigInt(r.amount), held: BigInt(r.held) }));
  }

  async findById(tenantId: string, id: string): Promise<PromotionalCreditEntity | undefined> {
    const { rows } = await preparedQuery<EntryRow>(
      this.manager,
      'promotional_credit_find',
      `SELECT ${ENTRY_COLUMNS} FROM promotional_credits e WHERE e.tenant_id = $1 AND e.id = $2`,
      [tenantId, id],
    );
    return rows[0] && entryOfRow(rows[0]);
  }

  /**
   * Pages of many List calls, newest first, each strictly after its
   * `beforeSeq` cursor and at most `limit` entries, in ONE prepared
   * statement per filter shape: concurrent calls share a round trip (a
   * call's own was a fifth of the server's CPU, in writev) and answer ONE
   * row each, the page as lines of text, one entry per line as a JSON array
   * (see PageEntry), instead of `limit` rows whose every column pg parses on
   * its own (a Date and a string per field: most of a page's CPU and
   * garbage). An entry read lately (READ_ENTRIES) is taken as kept, found by
   * the id its line starts with; only the others are parsed, with one
   * JSON.parse (plus one for their metadata or allocations when they have
   * any). Answers one page per read, in the order of `reads`.
   */
  async listMany(reads: readonly PageRead[]): Promise<PromotionalCreditEntity[][]> {
    const answers = new Array<PromotionalCreditEntity[]>(reads.length);
    const shapes = new Map<string, { members: number[]; columns: unknown[][] }>();
    for (let i = 0; i < reads.length; i++) {
      const { text, values } = pageStatementOf(reads[i]!);
      let shape = shapes.get(text);
      if (shape === undefined) {
        shape = { members: [], columns: values.map(() => []) };
        shapes.set(text, shape);
      }
      shape.members.push(i);
      for (let k = 0; k < values.length; k++) shape.columns[k]!.push(values[k]);
    }
    await Promise.all(
      [...shapes].map(async ([text, { members, columns }]) => {
        const { rows } = await preparedQuery<{ i: number; page: string | null }>(this.manager, statementName(text), text, columns);
        for (const row of rows) {
          const index = members[row.i - 1]!;
          const tenantId = reads[index]!.tenantId;
          const lines = row.page === null ? [] : row.page.split('\n');
          const entries = new Array<PromotionalCreditEntity>(lines.length);
          for (let n = 0; n < lines.length; n++) {
            // A line starts `["<id>",`: a uuid's text is 36 characters.
            const kept = READ_ENTRIES.get(lines[n]!.slice(2, 38));
            if (kept !== undefined && kept.tenantId === tenantId) {
              entries[n] = kept;
              continue;
            }
            const entry = entryOfPage(tenantId, JSON.parse(lines[n]!) as PageEntry);
            READ_ENTRIES.remember(entry);
            entries[n] = entry;
          }
          answers[index] = entries;
        }
      }),
    );
    return answers;
  }

  /**
   * One page of a balance's lots in consumption order (expire_time, never
   * last, then oldest), strictly after `after`; with `includeEmpty` also lots
   * with nothing left. Without it, lots past their expire_time at `at` are
   * left out (what an active hold keeps of them is not available to anyone).
   */
  async listLots(
    tenantId: string,
    customerId: string,
    currencyCode: string,
    options: { includeEmpty: boolean; at: Date; after: { expireTime: Date | null; seq: bigint } | undefined; limit: number },
  ): Promise<LotRecord[]> {
    const params: unknown[] = [tenantId, customerId, currencyCode, options.at, options.limit];
    let position = '';
    if (options.after?.expireTime === null) {
      // Keyset on (expire_time NULLS LAST, seq): past the expiring lots.
      params.push(options.after.seq.toString());
      position = `AND l.expire_time IS NULL AND l.seq > $6`;
    } else if (options.after) {
      params.push(options.after.expireTime, options.after.seq.toString());
      position = `AND (l.expire_time IS NULL OR l.expire_time > $6 OR (l.expire_time = $6 AND l.seq > $7))`;
    }
    // A page of the balance's lots that meet `which`, in order from the
    // partial index of open or of used-up lots. Every lot (includeEmpty) is
    // a page of each, merged: no index holds all of a balance's lots (each
    // Add would write an entry in it too: 3% of an Add's instructions,
    // migration 1765600000000).
    const page = (which: string) =>
      `(SELECT * FROM promotional_credit_lots l
         WHERE l.tenant_id = $1 AND l.customer_id = $2 AND l.currency_code = $3 AND ${which} ${position}
         ORDER BY l.expire_time, l.seq
         LIMIT $5)`;
    const lots = options.includeEmpty
      ? `${page('l.open')} UNION ALL ${page('NOT l.open')}`
      : page('l.open AND (l.expire_time IS NULL OR l.expire_time > $4) AND l.revoke_time IS NULL');
    const rows: Array<{
      id: string;
      seq: string;
      amount: string;
      remaining: string;
      expire_time: Date | null;
      credit_type: CreditType;
      create_time: Date;
    }> = await this.manager.query(
      // A lot past its end (its expire_time, or the reversal of its credit:
      // revoke_time) keeps only what holds active at `at` reserve of it.
      `SELECT l.id, l.seq, l.amount,
              CASE WHEN least(l.expire_time, l.revoke_time) <= $4
                   THEN (SELECT coalesce(sum((a.value->>'amount')::bigint), 0)
                           FROM promotional_credit_holds y, jsonb_array_elements(y.allocations) AS a (value)
                          WHERE y.tenant_id = l.tenant_id AND y.customer_id = l.customer_id AND y.currency_code = l.currency_code
                            AND y.status = 'ACTIVE' AND y.expire_time > $4 AND (a.value->>'lot_id')::uuid = l.id)
                   ELSE l.remaining END AS remaining,
              l.expire_time, l.credit_type, l.create_time
         FROM (${lots}) AS l
        ORDER BY l.expire_time, l.seq
        LIMIT $5`,
      params,
    );
    return rows.map((r) => ({
      id: r.id,
      seq: BigInt(r.seq),
      customerId,
      currencyCode,
      amount: BigInt(r.amount),
      remaining: BigInt(r.remaining),
      expireTime: r.expire_time,
      creditType: r.credit_type,
      createTime: r.create_time,
    }));
  }

  /** Holds by id, many in one prepared statement (concurrent captures, releases and reads: see holdReads); undefined where there is none. */
  async holdsOfMany(reads: readonly HoldRead[]): Promise<Array<HoldRecord | undefined>> {
    const tenantIds = reads.map((read) => read.tenantId);
    const ids = reads.map((read) => read.id);
    const { rows } = await preparedQuery<{ i: number; hold: HoldJson }>(
      this.manager,
      'promotional_credit_holds_many',
      `SELECT q.i::int AS i, promotional_credit_hold_json(h) AS hold
         FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS q(tenant_id, id, i)
         JOIN promotional_credit_holds h ON h.id = q.id AND h.tenant_id = q.tenant_id`,
      [tenantIds, ids],
    );
    const answers = new Array<HoldRecord | undefined>(reads.length).fill(undefined);
    for (const r of rows) answers[r.i - 1] = holdOfJson(reads[r.i - 1]!.tenantId, r.hold);
    return answers;
  }

  /**
   * One page of holds, newest first, strictly before `beforeSeq`; `status`
   * as read at `at` (an ACTIVE hold past its expire_time is EXPIRED).
   */
  async listHolds(
    tenantId: string,
    filter: { customerId: string | undefined; status: HoldStatus | undefined; at: Date },
    beforeSeq: bigint | undefined,
    limit: number,
  ): Promise<HoldRecord[]> {
    const params: unknown[] = [tenantId, limit];
    const where: string[] = [];
    const param = (value: unknown) => {
      params.push(value);
      return `$${params.length}`;
    };
    if (filter.customerId !== undefined) where.push(`h.customer_id = ${param(filter.customerId)}`);
    if (beforeSeq !== undefined) where.push(`h.seq < ${param(beforeSeq.toString())}`);
    if (filter.status === 'ACTIVE') where.push(`h.status = 'ACTIVE' AND h.expire_time > ${param(filter.at)}`);
    else if (filter.status === 'EXPIRED') where.push(`(h.status = 'EXPIRED' OR (h.status = 'ACTIVE' AND h.expire_time <= ${param(filter.at)}))`);
    else if (filter.status !== undefined) where.push(`h.status = ${param(filter.status)}`);
    const rows: Array<{ hold: HoldJson }> = await this.manager.query(
      `SELECT promotional_credit_hold_json(h) AS hold FROM promotional_credit_holds h
        WHERE h.tenant_id = $1 ${where.map((w) => `AND ${w}`).join(' ')}
        ORDER BY h.seq DESC LIMIT $2`,
      params,
    );
    return rows.map((r) => holdOfJson(tenantId, r.hold));
  }
}

/** A hold as the SQL write path writes it (promotional_credit_hold_json: answers and hold events). */
export function holdOfJson(tenantId: string, h: HoldJson): HoldRecord {
  return {
    id: h.id,
    seq: BigInt(h.seq),
    tenantId,
    customerId: h.customer_id,
    currencyCode: h.currency_code,
    amount: BigInt(h.amount),
    capturedAmount: BigInt(h.captured_amount),
    status: h.status,
    description: h.description,
    reference: h.reference,
    metadata: h.metadata,
    doneBy: h.done_by,
    expireTime: new Date(h.expire_time),
    createTime: new Date(h.create_time),
    updateTime: new Date(h.update_time),
  };
}

export function entryOfRow(r: EntryRow): PromotionalCreditEntity {
  const entry: PromotionalCreditEntity = {
    id: r.id,
    seq: BigInt(r.seq),
    tenantId: r.tenant_id,
    customerId: r.customer_id,
    currencyCode: r.currency_code,
    type: r.type,
    amount: BigInt(r.amount),
    description: r.description,
    creditType: r.credit_type,
    reference: r.reference,
    closingBalance: BigInt(r.closing_balance),
    doneBy: r.done_by,
    createTime: r.create_time,
    origin: r.origin,
    expireTime: r.expire_time,
    allocations: allocationsFromJson(r.allocations),
    reversesId: r.reverses_id,
    metadata: r.metadata,
    hash: r.hash,
  };
  return Object.assign(new PromotionalCreditEntity(), entry);
}

/**
 * The statement of a page read: its text depends only on the filter's shape
 * (which filters are set), and reads any number of pages of that shape, one
 * per element of its array parameters (`values` holds this read's element
 * of each).
 */
function pageStatementOf(read: PageRead): { text: string; values: unknown[] } {
  const { filter } = read;
  const types: string[] = [];
  const values: unknown[] = [];
  /** This read's value as column `q.pN` of the statement's rows of parameters, `type` the SQL type of its array. */
  const param = (value: unknown, type: string) => {
    values.push(value);
    types.push(type);
    return `q.p${values.length}`;
  };
  /** A list of text values as one parameter: multidimensional arrays cannot be ragged. */
  const textList = (list: readonly string[]) => `ARRAY(SELECT json_array_elements_text(${param(JSON.stringify(list), 'text')}::json))`;
  const where = [`e.tenant_id = ${param(read.tenantId, 'uuid')}`];
  if (read.beforeSeq !== undefined) where.push(`e.seq < ${param(read.beforeSeq.toString(), 'bigint')}`);
  if (filter.id?.is !== undefined) where.push(`e.id = ${param(filter.id.is, 'uuid')}`);
  if (filter.id?.isNot !== undefined) where.push(`e.id <> ${param(filter.id.isNot, 'uuid')}`);
  if (filter.id?.startsWith !== undefined) where.push(`e.id::text LIKE ${param(likePrefix(filter.id.startsWith), 'text')}`);
  if (filter.customerId?.is !== undefined) where.push(`e.customer_id = ${param(filter.customerId.is, 'text')}`);
  if (filter.customerId?.isNot !== undefined) where.push(`e.customer_id <> ${param(filter.customerId.isNot, 'text')}`);
  if (filter.customerId?.startsWith !== undefined) where.push(`e.customer_id LIKE ${param(likePrefix(filter.customerId.startsWith), 'text')} ESCAPE '\\'`);
  if (filter.types) where.push(filter.types.length === 0 ? 'false' : `e.type = ANY(${textList(filter.types)})`);
  if (filter.origins) {
    const named = filter.origins.filter((o): o is Origin => o !== null);
    const unspecified = filter.origins.includes(null) ? ' OR e.origin IS NULL' : '';
    where.push(filter.origins.length === 0 ? 'false' : named.length === 0 ? 'e.origin IS NULL' : `(e.origin = ANY(${textList(named)})${unspecified})`);
  }
  // Containment on the GIN index (jsonb_path_ops), which holds only entries
  // with metadata (say so, so that the planner may use it): one pair finds
  // its entries without reading the tenant's ledger.
  if (filter.metadata && Object.keys(filter.metadata).length > 0) {
    where.push(`e.metadata @> ${param(JSON.stringify(filter.metadata), 'jsonb')} AND e.metadata <> '{}'::jsonb`);
  }
  // Compared at millisecond precision, the precision create_time is answered
  // with: "after" an entry's own create_time must not match that entry.
  const t = filter.createTime;
  const createTime = `date_trunc('milliseconds', e.create_time)`;
  if (t.afterExclusive) where.push(`${createTime} > ${param(t.afterExclusive, 'timestamptz')}`);
  if (t.from) where.push(`${createTime} >= ${param(t.from, 'timestamptz')}`);
  if (t.until) where.push(`${createTime} < ${param(t.until, 'timestamptz')}`);
  const limit = param(read.limit, 'int');
  const columns = types.map((_, k) => `p${k + 1}`).join(', ');
  const arrays = types.map((type, k) => `$${k + 1}::${type}[]`).join(', ');
  const text = `SELECT q.i::int AS i,
       (SELECT string_agg(array_to_json(${PAGE_ENTRY})::text, E'\\n' ORDER BY e.seq DESC)
          FROM (SELECT ${ENTRY_COLUMNS} FROM promotional_credits e WHERE ${where.join(' AND ')} ORDER BY e.seq DESC LIMIT ${limit}) e) AS page
  FROM unnest(${arrays}) WITH ORDINALITY AS q(${columns}, i)`;
  return { text, values };
}

/**
 * One entry of a list page as the statement's JSON holds it: every field as
 * text (or null), the way PostgreSQL writes it; times as whole milliseconds
 * since the epoch (the precision they are answered with, truncated as pg's
 * own parsing does), metadata and allocations as their JSON text.
 */
type PageEntry = [
  id: string,
  seq: string,
  customerId: string,
  currencyCode: string,
  type: EntryType,
  amount: string,
  description: string,
  creditType: CreditType,
  reference: string,
  closingBalance: string,
  doneBy: string,
  createTime: string,
  origin: Origin | null,
  expireTime: string | null,
  allocations: string | null,
  reversesId: string | null,
  metadata: string,
  hash: string | null,
];

/**
 * An entry as a text array, which array_to_json writes as a JSON array (a
 * line of the page: JSON escapes a newline within a string), having looked
 * up how to write text once. The json_build_array it replaces looked up the
 * writer of each of its 18 arguments again for every entry: 2.07 → 1.40 ms
 * for 16 pages of 21 (pgbench, medians of three; the same on PostgreSQL 15:
 * 1.71 → 1.40). The page as lines instead of one JSON array of them (so
 * that a kept entry is not parsed) did not cost PostgreSQL more: 32 pages
 * of 21, 2.20-2.30 → 2.07-2.09 ms (pgbench, PostgreSQL 15; one more run of
 * the new read 3.47, out of line with every other).
 */
const PAGE_ENTRY = `ARRAY[e.id::text, e.seq::text, e.customer_id, e.currency_code, e.type::text, e.amount::text, e.description, e.credit_type::text,
  e.reference, e.closing_balance::text, e.done_by, floor(extract(epoch FROM e.create_time) * 1000)::text, e.origin::text,
  floor(extract(epoch FROM e.expire_time) * 1000)::text, e.allocations::text, e.reverses_id::text, e.metadata::text, e.hash]`;

function entryOfPage(tenantId: string, p: PageEntry): PromotionalCreditEntity {
  return {
    id: p[0],
    seq: BigInt(p[1]),
    tenantId,
    customerId: p[2],
    currencyCode: p[3],
    type: p[4],
    amount: BigInt(p[5]),
    description: p[6],
    creditType: p[7],
    reference: p[8],
    closingBalance: BigInt(p[9]),
    doneBy: p[10],
    createTime: new Date(Number(p[11])),
    origin: p[12],
    expireTime: p[13] === null ? null : new Date(Number(p[13])),
    allocations: allocationsFromJson(p[14] === null ? null : JSON.parse(p[14])),
    reversesId: p[15],
    // Most entries have none: skip a parse for them.
    metadata: p[16] === '{}' ? {} : (JSON.parse(p[16]) as Metadata),
    hash: p[17],
  };
}

/** Prepared statement names by text (a name is per text): one per filter shape, so the map stays small. */
const statementNames = new Map<string, string>();

/** A short stable name for a list statement's text, hashed once per text. */
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `promotional_credit_list_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`;
    if (statementNames.size >= 1000) statementNames.clear();
    statementNames.set(text, name);
  }
  return name;
}

function compareBalanceKeys(a: EntryDraft, b: EntryDraft): number {
  return compare(a.tenantId, b.tenantId) || compare(a.customerId, b.customerId) || compare(a.currencyCode, b.currencyCode);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function outcomeOf(write: LedgerWrite, row: ApplyRow): LedgerWriteOutcome {
  const { draft } = write;
  // The balance's key as the statement answers it: a balanceOfTarget write's draft has none.
  const customerId = row.customer_id ?? '';
  const currencyCode = row.currency_code ?? '';
  const hold = row.hold ? { hold: holdOfJson(draft.tenantId, row.hold) } : {};
  if (row.outcome === 'refused') {
    return {
      written: undefined,
      refused: row.reason!,
      balance: BigInt(row.balance ?? 0),
      held: BigInt(row.held ?? 0),
      customerId,
      currencyCode,
      ...hold,
    };
  }
  const balances: Balance[] = (row.others ?? []).map((o) => ({ currencyCode: o.c, amount: BigInt(o.a), held: BigInt(o.h) }));
  if (row.balance !== null) balances.push({ currencyCode, amount: BigInt(row.balance), held: BigInt(row.held!) });
  balances.sort((a, b) => compare(a.currencyCode, b.currencyCode));
  if (row.outcome === 'unchanged') return { written: undefined, unchanged: balances, ...hold };
  // Every field spelled out: `{ ...draft, … }` cost ~4 µs per entry on Node 20, a literal ~0.3 µs.
  const entry: PromotionalCreditEntity = {
    id: write.validateOnly ? '' : row.entry_id!,
    seq: BigInt(row.entry_seq!),
    tenantId: draft.tenantId,
    customerId,
    currencyCode,
    type: row.entry_type!,
    amount: BigInt(row.entry_amount!),
    description: row.entry_description!,
    creditType: row.entry_credit_type!,
    reference: row.entry_reference!,
    closingBalance: BigInt(row.entry_closing_balance!),
    doneBy: draft.doneBy,
    createTime: row.entry_time!,
    origin: row.entry_origin,
    expireTime: row.entry_expire_time,
    allocations: allocationsFromJson(row.entry_allocations),
    reversesId: row.entry_reverses_id,
    metadata: row.entry_metadata!,
    hash: write.validateOnly ? '' : row.entry_hash,
  };
  return { written: { entry: Object.assign(new PromotionalCreditEntity(), entry), balances }, ...hold };
}
