import type { EntityManager } from 'typeorm';
import { preparedQuery } from '../db/prepared-query';
import { likePrefix, type StringFilter, type TimeWindow } from '../common/list-filters';
import { PromotionalCreditBalanceEntity } from './promotional-credit-balance.entity';
import { PromotionalCreditEntity, type CreditType, type EntryType } from './promotional-credit.entity';

export interface Balance {
  currencyCode: string;
  amount: bigint;
}

/** What to write with a ledger entry; the balance and id come from the database. */
export interface EntryDraft {
  tenantId: string;
  customerId: string;
  currencyCode: string;
  amount: bigint;
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

/** A balance change to apply: an INCREMENT, or a DECREMENT only if the balance covers it. */
export interface LedgerWrite {
  type: EntryType;
  draft: EntryDraft;
  /** Also answer the customer's balances in the other currencies (multi-currency tenants). */
  withOtherCurrencies: boolean;
}

/**
 * What applying a LedgerWrite did: the entry and balances, or, when the guard
 * did not hold (a DECREMENT larger than the balance, an INCREMENT past the
 * largest amount), nothing written and the balance as it stands.
 */
export type LedgerWriteOutcome = { written: EntryWithBalances } | { written: undefined; balance: bigint };

/** See migration 1764000000000: one statement for a whole batch of changes. */
const APPLY_SQL = `SELECT item, id, seq, create_time, balance, written, others
  FROM promotional_credit_apply($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::boolean[])`;

interface ApplyRow {
  item: number;
  id: string | null;
  seq: string | null;
  create_time: Date | null;
  balance: string;
  written: boolean;
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
    const sorted = order.map((i) => writes[i]!);
    const column = <T>(pick: (w: LedgerWrite) => T) => sorted.map(pick);
    const { rows } = await preparedQuery<ApplyRow>(this.manager, 'promotional_credit_apply', APPLY_SQL, [
      column((w) => w.draft.tenantId),
      column((w) => w.draft.customerId),
      column((w) => w.draft.currencyCode),
      column((w) => w.type),
      column((w) => w.draft.amount.toString()),
      column((w) => w.draft.description),
      column((w) => w.draft.creditType),
      column((w) => w.draft.reference),
      column((w) => w.draft.doneBy),
      column((w) => w.withOtherCurrencies),
    ]);
    const outcomes = new Array<LedgerWriteOutcome>(writes.length);
    for (const row of rows) {
      const index = order[row.item - 1]!;
      outcomes[index] = outcomeOf(writes[index]!, row);
    }
    return outcomes;
  }

  /** Locks a balance row (FOR UPDATE, no joins) for a read-modify-write; undefined if it does not exist. */
  async lockBalance(tenantId: string, customerId: string, currencyCode: string): Promise<PromotionalCreditBalanceEntity | undefined> {
    const row = await this.manager.getRepository(PromotionalCreditBalanceEntity).findOne({
      where: { tenantId, customerId, currencyCode },
      lock: { mode: 'pessimistic_write' },
    });
    return row ?? undefined;
  }

  /** Creates a zero balance row if there is none, so it can be locked. */
  async ensureBalance(tenantId: string, customerId: string, currencyCode: string): Promise<void> {
    await this.manager
      .createQueryBuilder()
      .insert()
      .into(PromotionalCreditBalanceEntity)
      .values({ tenantId, customerId, currencyCode, amount: 0n })
      .orIgnore()
      .execute();
  }

  /**
   * Writes an entry against a balance row the caller has locked and sets the
   * balance to `closingBalance`.
   */
  async writeLocked(type: EntryType, draft: EntryDraft, closingBalance: bigint): Promise<PromotionalCreditEntity> {
    await this.manager
      .createQueryBuilder()
      .update(PromotionalCreditBalanceEntity)
      .set({ amount: closingBalance, updateTime: () => 'clock_timestamp()' })
      .where({ tenantId: draft.tenantId, customerId: draft.customerId, currencyCode: draft.currencyCode })
      .execute();
    const inserted = await this.manager
      .createQueryBuilder()
      .insert()
      .into(PromotionalCreditEntity)
      .values({ ...draft, type, closingBalance })
      .returning('id, seq, create_time')
      .execute();
    const generated = inserted.raw[0] as { id: string; seq: string; create_time: Date };
    return entryFrom(type, draft, { id: generated.id, seq: generated.seq, create_time: generated.create_time, closing_balance: closingBalance.toString() });
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
  if (!row.written) return { written: undefined, balance: BigInt(row.balance) };
  const entry = entryFrom(write.type, draft, { id: row.id!, seq: row.seq!, create_time: row.create_time!, closing_balance: row.balance });
  const balances: Balance[] = (row.others ?? []).map((o) => ({ currencyCode: o.c, amount: BigInt(o.a) }));
  balances.push({ currencyCode: draft.currencyCode, amount: entry.closingBalance });
  balances.sort((a, b) => compare(a.currencyCode, b.currencyCode));
  return { written: { entry, balances } };
}

function entryFrom(
  type: EntryType,
  draft: EntryDraft,
  row: { id: string; seq: string; create_time: Date; closing_balance: string },
): PromotionalCreditEntity {
  // Every field spelled out: `{ ...draft, … }` cost ~4 µs per entry on Node 20, a literal ~0.3 µs.
  const entry: PromotionalCreditEntity = {
    id: row.id,
    seq: BigInt(row.seq),
    tenantId: draft.tenantId,
    customerId: draft.customerId,
    currencyCode: draft.currencyCode,
    type,
    amount: draft.amount,
    description: draft.description,
    creditType: draft.creditType,
    reference: draft.reference,
    closingBalance: BigInt(row.closing_balance),
    doneBy: draft.doneBy,
    createTime: row.create_time,
  };
  return Object.assign(new PromotionalCreditEntity(), entry);
}
