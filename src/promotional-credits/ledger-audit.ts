import type { EntityManager } from 'typeorm';

/** What can be wrong with one balance of the promotional credit ledger. */
export type LedgerProblemKind =
  /** The balance row differs from sum(INCREMENT) - sum(DECREMENT) of its entries. */
  | 'BALANCE_NOT_SUM_OF_ENTRIES'
  /** The last entry's closing_balance differs from the balance row. */
  | 'LAST_CLOSING_BALANCE_MISMATCH'
  /** An entry's closing_balance is not the previous one plus or minus its amount. */
  | 'CLOSING_BALANCE_CHAIN_BROKEN'
  /** A balance, an amount or a closing balance is below zero. */
  | 'NEGATIVE_VALUE'
  /** Entries exist for a balance that has no balance row. */
  | 'ENTRIES_WITHOUT_BALANCE';

export interface LedgerProblem {
  kind: LedgerProblemKind;
  tenantSlug: string;
  tenantId: string;
  customerId: string;
  currencyCode: string;
  /** One sentence naming the balance and what is wrong with it. */
  message: string;
}

export interface LedgerAudit {
  balancesChecked: number;
  entriesChecked: number;
  /** Balances with at least one problem (may exceed those listed in `problems`). */
  brokenBalances: number;
  /** Problems of the first MAX_LISTED_BALANCES broken balances. */
  problems: LedgerProblem[];
}

/** How many broken balances an audit lists in detail; the rest are only counted. */
export const MAX_LISTED_BALANCES = 1000;

/**
 * Checks the ledger's invariants for every balance (of one tenant, or of the
 * whole database): the balance equals sum(INCREMENT) - sum(DECREMENT) of its
 * entries; its entries, in `seq` order, chain (the first closing balance is
 * its signed amount, each next one the previous plus or minus its amount);
 * the last closing balance equals the balance; nothing is negative; every
 * entry has a balance row. Answers the problems found; empty means healthy.
 */
export async function auditLedger(manager: EntityManager, options: { tenantId?: string } = {}): Promise<LedgerProblem[]> {
  return (await runLedgerAudit(manager, options)).problems;
}

interface BrokenBalanceRow {
  tenant_id: string;
  tenant_slug: string | null;
  customer_id: string;
  currency_code: string;
  /** null: no balance row. */
  balance: string | null;
  entry_count: string;
  entries_sum: string;
  last_closing: string | null;
  breaks: string;
  negatives: string;
  first_break: { id: string; seq: string; expected: string | null; found: string } | null;
}

/**
 * The audit as ONE statement, so it reads one snapshot even while writes go
 * on, and set-based (window functions, one pass over the entries), so it
 * scales with the ledger rather than with round trips. Numbers travel as text
 * (numeric sums of bigints can exceed 2^53 and int64).
 */
function auditSql(tenantFilter: boolean): string {
  const where = (alias: string) => (tenantFilter ? `WHERE ${alias}.tenant_id = $2` : '');
  return `
  WITH entries AS (
    SELECT e.tenant_id, e.customer_id, e.currency_code, e.id, e.seq, e.amount, e.closing_balance,
           CASE e.type WHEN 'INCREMENT' THEN e.amount::numeric WHEN 'DECREMENT' THEN -e.amount::numeric END AS signed,
           coalesce(lag(e.closing_balance) OVER w, 0)::numeric AS previous_closing,
           lead(e.seq) OVER w IS NULL AS is_last
      FROM promotional_credits e
      ${where('e')}
    WINDOW w AS (PARTITION BY e.tenant_id, e.customer_id, e.currency_code ORDER BY e.seq)
  ), checked AS (
    SELECT entries.*,
           (signed IS NULL OR closing_balance::numeric <> previous_closing + signed) AS breaks
      FROM entries
  ), ledgers AS (
    SELECT tenant_id, customer_id, currency_code,
           count(*) AS entry_count,
           coalesce(sum(signed), 0) AS entries_sum,
           min(closing_balance) FILTER (WHERE is_last) AS last_closing,
           count(*) FILTER (WHERE breaks) AS breaks,
           count(*) FILTER (WHERE amount < 0 OR closing_balance < 0) AS negatives,
           (array_agg(json_build_object('id', id, 'seq', seq::text, 'expected', (previous_closing + signed)::text, 'found', closing_balance::text)
                      ORDER BY seq) FILTER (WHERE breaks))[1] AS first_break
      FROM checked
     GROUP BY tenant_id, customer_id, currency_code
  ), balances AS (
    SELECT b.tenant_id, b.customer_id, b.currency_code, b.amount
      FROM promotional_credit_balances b
      ${where('b')}
  ), broken AS (
    SELECT tenant_id, customer_id, currency_code,
           b.amount AS balance, coalesce(l.entry_count, 0) AS entry_count, coalesce(l.entries_sum, 0) AS entries_sum,
           l.last_closing, coalesce(l.breaks, 0) AS breaks, coalesce(l.negatives, 0) AS negatives, l.first_break
      FROM balances b
      FULL JOIN ledgers l USING (tenant_id, customer_id, currency_code)
     WHERE b.amount IS NULL
        OR b.amount < 0
        OR b.amount::numeric <> coalesce(l.entries_sum, 0)
        OR (l.entry_count > 0 AND l.last_closing IS DISTINCT FROM b.amount)
        OR l.breaks > 0
        OR l.negatives > 0
  )
  SELECT (SELECT count(*) FROM balances)::text AS balances_checked,
         (SELECT coalesce(sum(entry_count), 0) FROM ledgers)::text AS entries_checked,
         (SELECT count(*) FROM broken)::text AS broken_balances,
         (SELECT coalesce(json_agg(listed), '[]')
            FROM (SELECT x.tenant_id, t.slug AS tenant_slug, x.customer_id, x.currency_code,
                         x.balance::text AS balance, x.entry_count::text AS entry_count, x.entries_sum::text AS entries_sum,
                         x.last_closing::text AS last_closing, x.breaks::text AS breaks, x.negatives::text AS negatives, x.first_break
                    FROM broken x LEFT JOIN tenants t ON t.id = x.tenant_id
                   ORDER BY t.slug, x.customer_id, x.currency_code
                   LIMIT $1) listed) AS listed`;
}

/** The audit with the figures the `credits verify` command prints. */
export async function runLedgerAudit(manager: EntityManager, options: { tenantId?: string } = {}): Promise<LedgerAudit> {
  const params: unknown[] = [MAX_LISTED_BALANCES];
  if (options.tenantId !== undefined) params.push(options.tenantId);
  const rows: Array<{ balances_checked: string; entries_checked: string; broken_balances: string; listed: BrokenBalanceRow[] }> =
    await manager.query(auditSql(options.tenantId !== undefined), params);
  const row = rows[0]!;
  return {
    balancesChecked: Number(row.balances_checked),
    entriesChecked: Number(row.entries_checked),
    brokenBalances: Number(row.broken_balances),
    problems: row.listed.flatMap(problemsOf),
  };
}

function problemsOf(row: BrokenBalanceRow): LedgerProblem[] {
  const problems: LedgerProblem[] = [];
  const slug = row.tenant_slug ?? `<unknown tenant ${row.tenant_id}>`;
  const where = `tenant ${slug}, customer ${row.customer_id}, ${row.currency_code}`;
  const add = (kind: LedgerProblemKind, what: string) =>
    problems.push({
      kind,
      tenantSlug: slug,
      tenantId: row.tenant_id,
      customerId: row.customer_id,
      currencyCode: row.currency_code,
      message: `${where}: ${what}`,
    });
  const entries = `${row.entry_count} ${row.entry_count === '1' ? 'entry' : 'entries'}`;

  if (row.balance === null) {
    add('ENTRIES_WITHOUT_BALANCE', `${entries} but no balance row`);
  } else {
    if (BigInt(row.balance) < 0n) add('NEGATIVE_VALUE', `balance is negative (${row.balance})`);
    if (BigInt(row.balance) !== BigInt(row.entries_sum)) {
      add('BALANCE_NOT_SUM_OF_ENTRIES', `balance is ${row.balance} but its ${entries} sum to ${row.entries_sum}`);
    }
    if (row.last_closing !== null && row.last_closing !== row.balance) {
      add('LAST_CLOSING_BALANCE_MISMATCH', `balance is ${row.balance} but the last entry's closing_balance is ${row.last_closing}`);
    }
  }
  if (row.negatives !== '0') add('NEGATIVE_VALUE', `${row.negatives} of its entries have a negative amount or closing_balance`);
  if (row.breaks !== '0' && row.first_break) {
    const b = row.first_break;
    const expected = b.expected === null ? 'an entry of a known type' : `closing_balance ${b.expected}`;
    add(
      'CLOSING_BALANCE_CHAIN_BROKEN',
      `closing balances do not chain: entry ${b.id} (seq ${b.seq}) has closing_balance ${b.found}, expected ${expected}` +
        (row.breaks === '1' ? '' : ` (${row.breaks} entries break the chain)`),
    );
  }
  return problems;
}
