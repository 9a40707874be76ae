import type { EntityManager } from 'typeorm';
import { preparedQuery } from '../db/prepared-query';
import { likePrefix, type StringFilter, type TimeWindow } from '../common/list-filters';
import { PromotionalCreditEntity, type CreditType, type EntryType } from './promotional-credit.entity';

export interface Balance {
  currencyCode: string;
  amount: bigint;
}

/** What to write with a ledger entry; its amount, balance and id come from the database. */
export interface EntryDraft {
  tenantId: string;
  customerId: string;
  currencyCode: string;
  description: string;
  creditType: CreditType;
  reference: string;
  doneBy: string;
}

/** An entry just written and the customer's other balances. */
export interface EntryWithBalances {
  entry: PromotionalCreditEntity;
  balances: Balance[];
}

export interface LedgerFilter {
  id?: StringFilter;
  customerId?: StringFilter;
  /** Allowed entry types; undefined means any, empty means none. */
  types?: EntryType[];
  createTime: TimeWindow;
}

/**
 * How a balance change computes its entry from the locked balance (see
 * sql/promotional-credit-apply.sql): ADD and DEDUCT move it by `amount`;
 * DEDUCT_ALL takes all of it; SET brings it to `amount`.
 */
export type LedgerOp = 'ADD' | 'DEDUCT' | 'DEDUCT_ALL' | 'SET';

/** A balance change to apply, guarded: a DEDUCT only if the balance covers it, an ADD only below the largest amount. */
export interface LedgerWrite {
  op: LedgerOp;
  /** The amount of ADD and DEDUCT, the target of SET; unused by DEDUCT_ALL. */
  amount: bigint;
  draft: EntryDraft;
  /** Also answer the customer's balances in the other currencies (multi-currency tenants). */
  withOtherCurrencies: boolean;
}

/**
 * What applying a LedgerWrite did: the entry and balances; or, when the guard
 * did not hold (a DEDUCT larger than the balance, an ADD past the largest
 * amount), nothing written and the balance as it stands; or, when there was
 * nothing to write (SET to the current value, DEDUCT_ALL of nothing), the
 * balances as they stand.
 */
export type LedgerWriteOutcome =
  | { written: EntryWithBalances }
  | { written: undefined; balance: bigint }
  | { written: undefined; unchanged: Balance[] };

/** The write path itself: src/promotional-credits/sql/promotional-credit-apply.sql. */
const APPLY_SQL = `SELECT item, outcome, entry_id, entry_seq, entry_time, entry_type, entry_amount, balance, others FROM promotional_credit_apply($1::jsonb)`;

interface ApplyRow {
  item: number;
  outcome: 'written' | 'unchanged' | 'refused';
  entry_id: string | null;
  entry_seq: string | null;
  entry_time: Date | null;
  entry_type: EntryType | null;
  entry_amount: string | null;
  balance: string | null;
  others: Array<{ c: string; a: string }> | null;
}

export class PromotionalCreditRepository {
  constructor(private readonly manager: EntityManager) {}

  /**
   * Applies the writes in ONE statement: each takes its balance row's lock
   * and writes its entry with the new balance while the lock is held, so a
   * lock lasts one round trip however many writes share it. Rows are locked
   * in balance-key order (the writes are sorted, stably, so that writes on one
   * balance keep their order), which keeps concurrent batches from
   * deadlocking. Outcomes come back in the order of `writes`.
   */
  async apply(writes: LedgerWrite[]): Promise<LedgerWriteOutcome[]> {
    const order = writes.map((_, i) => i).sort((a, b) => compareBalanceKeys(writes[a]!.draft, writes[b]!.draft) || a - b);
    const items = order.map((i) => {
      const { op, amount, draft, withOtherCurrencies } = writes[i]!;
      return {
        op,
        tenant_id: draft.tenantId,
        customer_id: draft.customerId,
        currency_code: draft.currencyCode,
        amount: amount.toString(),
        description: draft.description,
        credit_type: draft.creditType,
        reference: draft.reference,
        done_by: draft.doneBy,
        with_others: withOtherCurrencies,
      };
    });
    const { rows } = await preparedQuery<ApplyRow>(this.manager, 'promotional_credit_apply', APPLY_SQL, [JSON.stringify(items)]);
    const outcomes = new Array<LedgerWriteOutcome>(writes.length);
    for (const row of rows) {
      const index = order[row.item - 1]!;
      outcomes[index] = outcomeOf(writes[index]!, row);
    }
    return outcomes;
  }

  /** A customer's balances by currency code; a read path, so one prepared statement. */
  async balances(tenantId: string, customerId: string): Promise<Balance[]> {
    const { rows } = await preparedQuery<{ currency_code: string; amount: string }>(
      this.manager,
      'promotional_credit_balances',
      `SELECT currency_code, amount FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2 ORDER BY currency_code`,
      [tenantId, customerId],
    );
    return rows.map((r) => ({ currencyCode: r.currency_code, amount: BigInt(r.amount) }));
  }

  async findById(tenantId: string, id: string): Promise<PromotionalCreditEntity | undefined> {
    return (await this.manager.getRepository(PromotionalCreditEntity).findOneBy({ tenantId, id })) ?? undefined;
  }

  /** One page, newest first, strictly after the `beforeSeq` cursor; asks for `limit` rows. */
  async list(tenantId: string, filter: LedgerFilter, beforeSeq: bigint | undefined, limit: number): Promise<PromotionalCreditEntity[]> {
    const q = this.manager.getRepository(PromotionalCreditEntity).createQueryBuilder('e').where('e.tenant_id = :tenantId', { tenantId });
    if (beforeSeq !== undefined) q.andWhere('e.seq < :beforeSeq', { beforeSeq: beforeSeq.toString() });
    if (filter.id?.is !== undefined) q.andWhere('e.id = :idIs', { idIs: filter.id.is });
    if (filter.id?.isNot !== undefined) q.andWhere('e.id <> :idIsNot', { idIsNot: filter.id.isNot });
    if (filter.id?.startsWith !== undefined) q.andWhere('e.id::text LIKE :idPrefix', { idPrefix: likePrefix(filter.id.startsWith) });
    if (filter.customerId?.is !== undefined) q.andWhere('e.customer_id = :customerIs', { customerIs: filter.customerId.is });
    if (filter.customerId?.isNot !== undefined) q.andWhere('e.customer_id <> :customerIsNot', { customerIsNot: filter.customerId.isNot });
    if (filter.customerId?.startsWith !== undefined) {
      q.andWhere(`e.customer_id LIKE :customerPrefix ESCAPE '\\'`, { customerPrefix: likePrefix(filter.customerId.startsWith) });
    }
    if (filter.types) {
      if (filter.types.length === 0) q.andWhere('false');
      else q.andWhere('e.type IN (:...types)', { types: filter.types });
    }
    // Compared at millisecond precision, the precision create_time is answered
    // with: "after" an entry's own create_time must not match that entry.
    const t = filter.createTime;
    const createTime = `date_trunc('milliseconds', e.create_time)`;
    if (t.afterExclusive) q.andWhere(`${createTime} > :after`, { after: t.afterExclusive });
    if (t.from) q.andWhere(`${createTime} >= :from`, { from: t.from });
    if (t.until) q.andWhere(`${createTime} < :until`, { until: t.until });
    return q.orderBy('e.seq', 'DESC').limit(limit).getMany();
  }
}

function compareBalanceKeys(a: EntryDraft, b: EntryDraft): number {
  return compare(a.tenantId, b.tenantId) || compare(a.customerId, b.customerId) || compare(a.currencyCode, b.currencyCode);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function outcomeOf(write: LedgerWrite, row: ApplyRow): LedgerWriteOutcome {
  const { draft } = write;
  if (row.outcome === 'refused') return { written: undefined, balance: BigInt(row.balance ?? 0) };
  const balances: Balance[] = (row.others ?? []).map((o) => ({ currencyCode: o.c, amount: BigInt(o.a) }));
  if (row.balance !== null) balances.push({ currencyCode: draft.currencyCode, amount: BigInt(row.balance) });
  balances.sort((a, b) => compare(a.currencyCode, b.currencyCode));
  if (row.outcome === 'unchanged') return { written: undefined, unchanged: balances };
  // Every field spelled out: `{ ...draft, … }` cost ~4 µs per entry on Node 20, a literal ~0.3 µs.
  const entry: PromotionalCreditEntity = {
    id: row.entry_id!,
    seq: BigInt(row.entry_seq!),
    tenantId: draft.tenantId,
    customerId: draft.customerId,
    currencyCode: draft.currencyCode,
    type: row.entry_type!,
    amount: BigInt(row.entry_amount!),
    description: draft.description,
    creditType: draft.creditType,
    reference: draft.reference,
    closingBalance: BigInt(row.balance!),
    doneBy: draft.doneBy,
    createTime: row.entry_time!,
  };
  return { written: { entry: Object.assign(new PromotionalCreditEntity(), entry), balances } };
}
