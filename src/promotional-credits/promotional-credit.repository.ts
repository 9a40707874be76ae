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

const ENTRY_COLUMNS = `id, seq, create_time, closing_balance`;

// The customer's balances in the other currencies, read in the same statement.
const OTHER_BALANCES = `
  (SELECT coalesce(json_agg(json_build_object('c', o.currency_code, 'a', o.amount::text)), '[]')
     FROM promotional_credit_balances o
    WHERE o.tenant_id = $1 AND o.customer_id = $2 AND o.currency_code <> $3) AS others`;

const ENTRY_VALUES = `$1, $2, $3, $TYPE, $4, $5, $6, $7, balance.amount, $8`;
const ENTRY_INSERT = `INSERT INTO promotional_credits
    (tenant_id, customer_id, currency_code, type, amount, description, credit_type, reference, closing_balance, done_by)`;

/**
 * Adds to a balance in ONE statement: the upsert takes the balance row's lock,
 * and the entry is written with the new balance while the lock is held, so
 * the lock lasts one round trip.
 */
const INCREMENT_SQL = `
  WITH balance AS (
    INSERT INTO promotional_credit_balances AS b (tenant_id, customer_id, currency_code, amount)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant_id, customer_id, currency_code)
    DO UPDATE SET amount = b.amount + EXCLUDED.amount, update_time = clock_timestamp()
    RETURNING amount
  ), entry AS (
    ${ENTRY_INSERT}
    SELECT ${ENTRY_VALUES.replace('$TYPE', `'INCREMENT'`)} FROM balance
    RETURNING ${ENTRY_COLUMNS}
  )
  SELECT entry.*, ${OTHER_BALANCES} FROM entry`;

/** Deducts in ONE guarded statement: no row comes back when the balance is too small. */
const DECREMENT_SQL = `
  WITH balance AS (
    UPDATE promotional_credit_balances
       SET amount = amount - $4, update_time = clock_timestamp()
     WHERE tenant_id = $1 AND customer_id = $2 AND currency_code = $3 AND amount >= $4
    RETURNING amount
  ), entry AS (
    ${ENTRY_INSERT}
    SELECT ${ENTRY_VALUES.replace('$TYPE', `'DECREMENT'`)} FROM balance
    RETURNING ${ENTRY_COLUMNS}
  )
  SELECT entry.*, ${OTHER_BALANCES} FROM entry`;

interface EntryRow {
  id: string;
  seq: string;
  create_time: Date;
  closing_balance: string;
  others: Array<{ c: string; a: string }>;
}

export class PromotionalCreditRepository {
  constructor(private readonly manager: EntityManager) {}

  /** Adds `draft.amount`; throws pg 22003 if the balance would overflow int64. */
  async increment(draft: EntryDraft): Promise<EntryWithBalances> {
    const { rows } = await preparedQuery<EntryRow>(this.manager, 'promotional_credit_increment', INCREMENT_SQL, params(draft));
    return toEntryWithBalances('INCREMENT', draft, rows[0]!);
  }

  /** Deducts `draft.amount`, or answers undefined (writing nothing) when the balance is smaller. */
  async decrementIfCovered(draft: EntryDraft): Promise<EntryWithBalances | undefined> {
    const { rows } = await preparedQuery<EntryRow>(this.manager, 'promotional_credit_decrement', DECREMENT_SQL, params(draft));
    return rows[0] ? toEntryWithBalances('DECREMENT', draft, rows[0]) : undefined;
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

  async balance(tenantId: string, customerId: string, currencyCode: string): Promise<bigint> {
    const row = await this.manager.getRepository(PromotionalCreditBalanceEntity).findOneBy({ tenantId, customerId, currencyCode });
    return row?.amount ?? 0n;
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

function params(d: EntryDraft): unknown[] {
  return [d.tenantId, d.customerId, d.currencyCode, d.amount.toString(), d.description, d.creditType, d.reference, d.doneBy];
}

function toEntryWithBalances(type: EntryType, draft: EntryDraft, row: EntryRow): EntryWithBalances {
  const entry = entryFrom(type, draft, row);
  const balances = row.others.map((o) => ({ currencyCode: o.c, amount: BigInt(o.a) }));
  balances.push({ currencyCode: draft.currencyCode, amount: entry.closingBalance });
  balances.sort((a, b) => (a.currencyCode < b.currencyCode ? -1 : 1));
  return { entry, balances };
}

function entryFrom(
  type: EntryType,
  draft: EntryDraft,
  row: { id: string; seq: string; create_time: Date; closing_balance: string },
): PromotionalCreditEntity {
  return Object.assign(new PromotionalCreditEntity(), {
    ...draft,
    id: row.id,
    seq: BigInt(row.seq),
    type,
    closingBalance: BigInt(row.closing_balance),
    createTime: row.create_time,
  });
}
