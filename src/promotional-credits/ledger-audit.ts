import type { EntityManager } from 'typeorm';
import { entryHash } from './entry-hash';

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

/** What can be wrong with the lots, holds or hash chain of a balance (see verifyLedger). */
export type LedgerDetailProblemKind =
  /** The lots' remaining amounts do not sum to the balance. */
  | 'LOTS_NOT_SUM_OF_BALANCE'
  /** A lot's granted amount less what is left differs from what entries drew from it (less what reversals put back). */
  | 'LOT_ALLOCATIONS_MISMATCH'
  /** An entry's allocations do not sum to its amount, or name a lot of another balance. */
  | 'ALLOCATIONS_NOT_ENTRY'
  /** The balance's held amount differs from the sum of its active holds. */
  | 'HELD_NOT_SUM_OF_HOLDS'
  /** A captured hold's amount differs from its capture entry's. */
  | 'CAPTURE_MISMATCH'
  /** An active hold's reservations do not sum to its amount, or name a lot of another balance. */
  | 'HOLD_NOT_RESERVED'
  /** A lot's `reserved` differs from what the active holds reserve of it. */
  | 'LOT_RESERVED_MISMATCH'
  /** An entry's hash is not the one its fields and the previous entry's hash give. */
  | 'HASH_CHAIN_BROKEN';

/**
 * The lot and hold invariants, as one statement (one snapshot): for every
 * balance, its lots' remaining sum to it and its active holds to its held
 * amount; for every lot, amount - remaining = what entries drew from it -
 * what reversals put back + what deductions written before lots took; every
 * entry's allocations sum to its amount and name lots of its own balance;
 * every captured hold matches its capture entry; every active hold
 * reserves its amount of lots of its own balance, and every lot's
 * `reserved` is what the active holds reserve of it.
 */
function detailAuditSql(tenantFilter: boolean): string {
  const and = (alias: string) => (tenantFilter ? `AND ${alias}.tenant_id = $2` : '');
  const where = (alias: string) => (tenantFilter ? `WHERE ${alias}.tenant_id = $2` : '');
  // The parts of an allocations column ([{lot_id, amount}]: an entry's, a
  // hold's), read whatever a tampered row holds without failing: a
  // malformed part reads as NULL (a problem below).
  const parts = (column: string) => `jsonb_array_elements(CASE WHEN jsonb_typeof(${column}) = 'array' THEN ${column} ELSE '[]' END) AS a (value)`;
  const partColumns = `
           CASE WHEN a.value->>'lot_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN (a.value->>'lot_id')::uuid END AS lot_id,
           CASE WHEN a.value->>'amount' ~ '^-?[0-9]{1,30}$' THEN (a.value->>'amount')::numeric END AS amount`;
  return `
  WITH allocation AS (
    SELECT e.id AS entry_id, e.tenant_id, e.customer_id, e.currency_code, e.type, e.amount AS entry_amount, ${partColumns}
      FROM promotional_credits e, ${parts('e.allocations')}
     WHERE e.allocations IS NOT NULL ${and('e')}
  ), reservation AS (
    SELECT h.id AS hold_id, h.tenant_id, h.customer_id, h.currency_code, h.amount AS hold_amount, ${partColumns}
      FROM promotional_credit_holds h LEFT JOIN LATERAL ${parts('h.allocations')} ON true
     WHERE h.status = 'ACTIVE' ${and('h')}
  ), problems AS (
    SELECT 'LOTS_NOT_SUM_OF_BALANCE' AS kind, b.tenant_id, b.customer_id, b.currency_code,
           format('balance is %s but its lots hold %s', b.amount, coalesce(l.remaining, 0)) AS detail
      FROM promotional_credit_balances b
      LEFT JOIN (SELECT tenant_id, customer_id, currency_code, sum(remaining) AS remaining FROM promotional_credit_lots GROUP BY 1, 2, 3) l
             USING (tenant_id, customer_id, currency_code)
     WHERE b.amount <> coalesce(l.remaining, 0) ${and('b')}
    UNION ALL
    SELECT 'LOT_ALLOCATIONS_MISMATCH', l.tenant_id, l.customer_id, l.currency_code,
           format('lot %s granted %s and has %s left, but entries drew %s from it', l.id, l.amount, l.remaining,
                  l.consumed_before_lots + coalesce(u.used, 0))
      FROM promotional_credit_lots l
      LEFT JOIN (SELECT lot_id, sum(CASE type WHEN 'DECREMENT' THEN amount ELSE -amount END) AS used FROM allocation GROUP BY lot_id) u
             ON u.lot_id = l.id
     WHERE l.amount - l.remaining <> l.consumed_before_lots + coalesce(u.used, 0) ${and('l')}
    UNION ALL
    SELECT 'ALLOCATIONS_NOT_ENTRY', x.tenant_id, x.customer_id, x.currency_code,
           format('entry %s of %s lists allocations of %s%s', x.entry_id, x.entry_amount, x.allocated,
                  CASE WHEN x.foreign_lots > 0 THEN format(', %s of them from lots of another balance', x.foreign_lots) ELSE '' END)
      FROM (SELECT a.entry_id, a.tenant_id, a.customer_id, a.currency_code, a.entry_amount, sum(a.amount) AS allocated,
                   count(*) FILTER (WHERE l.id IS NULL OR (l.tenant_id, l.customer_id, l.currency_code) <> (a.tenant_id, a.customer_id, a.currency_code)) AS foreign_lots
              FROM allocation a LEFT JOIN promotional_credit_lots l ON l.id = a.lot_id
             GROUP BY 1, 2, 3, 4, 5) x
     WHERE x.allocated <> x.entry_amount OR x.foreign_lots > 0
    UNION ALL
    SELECT 'HELD_NOT_SUM_OF_HOLDS', b.tenant_id, b.customer_id, b.currency_code,
           format('held is %s but its active holds sum to %s', b.held, coalesce(h.held, 0))
      FROM promotional_credit_balances b
      LEFT JOIN (SELECT tenant_id, customer_id, currency_code, sum(amount) AS held FROM promotional_credit_holds WHERE status = 'ACTIVE' GROUP BY 1, 2, 3) h
             USING (tenant_id, customer_id, currency_code)
     WHERE b.held <> coalesce(h.held, 0) ${and('b')}
    UNION ALL
    SELECT 'CAPTURE_MISMATCH', h.tenant_id, h.customer_id, h.currency_code,
           format('hold %s captured %s but its capture entry %s is %s', h.id, h.captured_amount, h.capture_id,
                  coalesce(e.amount::text || ' (' || e.origin || ')', 'missing'))
      FROM promotional_credit_holds h
      LEFT JOIN promotional_credits e ON e.id = h.capture_id
     WHERE h.status = 'CAPTURED' ${and('h')}
       AND (e.id IS NULL OR e.amount <> h.captured_amount OR e.origin IS DISTINCT FROM 'HOLD_CAPTURE'
            OR (e.tenant_id, e.customer_id, e.currency_code) <> (h.tenant_id, h.customer_id, h.currency_code))
    UNION ALL
    SELECT 'HOLD_NOT_RESERVED', x.tenant_id, x.customer_id, x.currency_code,
           format('active hold %s of %s reserves %s%s', x.hold_id, x.hold_amount, coalesce(x.reserved, 0),
                  CASE WHEN x.foreign_lots > 0 THEN format(', %s of it in lots of another balance', x.foreign_lots) ELSE '' END)
      FROM (SELECT r.hold_id, r.tenant_id, r.customer_id, r.currency_code, r.hold_amount, sum(r.amount) AS reserved,
                   count(r.lot_id) FILTER (WHERE l.id IS NULL OR (l.tenant_id, l.customer_id, l.currency_code) <> (r.tenant_id, r.customer_id, r.currency_code)) AS foreign_lots
              FROM reservation r LEFT JOIN promotional_credit_lots l ON l.id = r.lot_id
             GROUP BY 1, 2, 3, 4, 5) x
     WHERE x.reserved IS DISTINCT FROM x.hold_amount OR x.foreign_lots > 0
    UNION ALL
    SELECT 'LOT_RESERVED_MISMATCH', l.tenant_id, l.customer_id, l.currency_code,
           format('lot %s has %s reserved but active holds reserve %s of it', l.id, l.reserved, coalesce(r.reserved, 0))
      FROM promotional_credit_lots l
      LEFT JOIN (SELECT lot_id, sum(amount) AS reserved FROM reservation GROUP BY lot_id) r ON r.lot_id = l.id
     WHERE l.reserved <> coalesce(r.reserved, 0) ${and('l')}
  )
  SELECT p.kind, p.tenant_id, t.slug AS tenant_slug, p.customer_id, p.currency_code, p.detail
    FROM problems p LEFT JOIN tenants t ON t.id = p.tenant_id
   ${where('p').replace('p.tenant_id = $2', 'true')}
   ORDER BY t.slug, p.customer_id, p.currency_code, p.kind, p.detail
   LIMIT $1`;
}

/** A problem with the lots, holds or hash chain of one balance. */
export interface LedgerDetailProblem {
  kind: LedgerDetailProblemKind;
  tenantSlug: string;
  tenantId: string;
  customerId: string;
  currencyCode: string;
  message: string;
}

async function auditDetails(manager: EntityManager, options: { tenantId?: string }): Promise<LedgerDetailProblem[]> {
  const params: unknown[] = [MAX_LISTED_BALANCES];
  if (options.tenantId !== undefined) params.push(options.tenantId);
  const rows: Array<{ kind: LedgerDetailProblemKind; tenant_id: string; tenant_slug: string | null; customer_id: string; currency_code: string; detail: string }> =
    await manager.query(detailAuditSql(options.tenantId !== undefined), params);
  return rows.map((r) => {
    const slug = r.tenant_slug ?? `<unknown tenant ${r.tenant_id}>`;
    return {
      kind: r.kind,
      tenantSlug: slug,
      tenantId: r.tenant_id,
      customerId: r.customer_id,
      currencyCode: r.currency_code,
      message: `tenant ${slug}, customer ${r.customer_id}, ${r.currency_code}: ${r.detail}`,
    };
  });
}

interface HashRow {
  /** The row's chain among those walked by the statement (1-based). */
  i: number;
  id: string;
  tenant_id: string;
  customer_id: string;
  currency_code: string;
  type: string;
  origin: string | null;
  amount: string;
  closing_balance: string;
  description: string;
  credit_type: string;
  reference: string;
  done_by: string;
  create_micros: string;
  expire_micros: string | null;
  reverses_id: string | null;
  /** As stored (jsonb): checked for its shape before it is hashed, since a tampered row may hold anything. */
  allocations: unknown;
  metadata: unknown;
  hash: string | null;
  seq: string;
}

/** What of an entry's JSON columns is not the shape the write path stores (undefined: both are). */
function malformedJson(r: Pick<HashRow, 'allocations' | 'metadata'>): string | undefined {
  const isText = (v: unknown) => typeof v === 'string';
  const { allocations, metadata } = r;
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata) || !Object.values(metadata).every(isText)) {
    return `metadata ${JSON.stringify(metadata)} is not an object of strings`;
  }
  if (
    allocations !== null &&
    (!Array.isArray(allocations) ||
      !allocations.every((a: unknown) => {
        const { lot_id: lotId, amount } = (typeof a === 'object' && a !== null ? a : {}) as { lot_id?: unknown; amount?: unknown };
        return isText(lotId) && isText(amount) && /^-?\d+$/.test(amount as string);
      }))
  ) {
    return `allocations ${JSON.stringify(allocations)} are not a list of {lot_id, amount} strings`;
  }
  return undefined;
}

/**
 * Recomputes every hash chain in TypeScript (entryHash, independent of the
 * SQL that wrote them), balance by balance in ledger order, reading the
 * ledger in pages; names the first entry of each balance whose hash does not
 * match (and stops that balance there: what follows chains from a wrong hash).
 */
async function auditHashes(manager: EntityManager, options: { tenantId?: string; hashPageSize?: number }): Promise<LedgerDetailProblem[]> {
  const problems: LedgerDetailProblem[] = [];
  // A page of balances in their primary key's order, then up to
  // PER_BALANCE entries of each (by seq, from the balance's own index) per
  // statement, until every chain of the page is walked: every statement is
  // bounded by BALANCES × PER_BALANCE rows. (Ordering the whole ledger by
  // (balance, seq) instead made PostgreSQL sort every entry left for every
  // page: about 12 minutes at 1.2 million entries.)
  const PER_BALANCE = options.hashPageSize ?? 500;
  const BALANCES = 50;
  let after: { tenantId: string; customerId: string; currencyCode: string } | undefined;
  for (;;) {
    const params: unknown[] = [BALANCES];
    const where: string[] = [];
    if (after) {
      params.push(after.tenantId, after.customerId, after.currencyCode);
      where.push(`(b.tenant_id, b.customer_id, b.currency_code) > ($2::uuid, $3, $4)`);
    }
    if (options.tenantId !== undefined) {
      params.push(options.tenantId);
      where.push(`b.tenant_id = $${params.length}`);
    }
    const page: Array<{ tenant_id: string; customer_id: string; currency_code: string; tenant_slug: string | null; last_hash: string | null }> = await manager.query(
      `SELECT b.tenant_id, b.customer_id, b.currency_code, t.slug AS tenant_slug, b.last_hash
         FROM promotional_credit_balances b LEFT JOIN tenants t ON t.id = b.tenant_id
        ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY b.tenant_id, b.customer_id, b.currency_code
        LIMIT $1`,
      params,
    );
    if (page.length === 0) return problems;
    // Each chain of the page as walked so far: the last seq checked and its hash.
    let walking = page.map((b) => Object.assign({}, b, { seq: '0', previous: '', broken: false }));
    while (walking.length > 0) {
      const rows: HashRow[] = await manager.query(
        `SELECT q.i::int AS i, e.id, e.tenant_id, e.customer_id, e.currency_code, e.type, e.origin, e.amount::text, e.closing_balance::text,
                e.description, e.credit_type, e.reference, e.done_by,
                (extract(epoch FROM e.create_time) * 1000000)::bigint::text AS create_micros,
                (extract(epoch FROM e.expire_time) * 1000000)::bigint::text AS expire_micros,
                e.reverses_id, e.allocations, e.metadata, e.hash, e.seq::text
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS q (tenant_id, customer_id, currency_code, after_seq, i)
          CROSS JOIN LATERAL (
            SELECT * FROM promotional_credits x
             WHERE x.tenant_id = q.tenant_id AND x.customer_id = q.customer_id AND x.currency_code = q.currency_code AND x.seq > q.after_seq
             ORDER BY x.seq
             LIMIT $5) AS e
          ORDER BY q.i, e.seq`,
        [walking.map((w) => w.tenant_id), walking.map((w) => w.customer_id), walking.map((w) => w.currency_code), walking.map((w) => w.seq), PER_BALANCE],
      );
      const counts = new Array<number>(walking.length).fill(0);
      const report = (chain: (typeof walking)[number], detail: string) => {
        chain.broken = true; // what follows chains from a wrong hash
        const slug = chain.tenant_slug ?? `<unknown tenant ${chain.tenant_id}>`;
        if (problems.length < MAX_LISTED_BALANCES) {
          problems.push({
            kind: 'HASH_CHAIN_BROKEN',
            tenantSlug: slug,
            tenantId: chain.tenant_id,
            customerId: chain.customer_id,
            currencyCode: chain.currency_code,
            message: `tenant ${slug}, customer ${chain.customer_id}, ${chain.currency_code}: ${detail}`,
          });
        }
      };
      for (const r of rows) {
        const chain = walking[r.i - 1]!;
        counts[r.i - 1]!++;
        chain.seq = r.seq;
        if (chain.broken) continue;
        const malformed = malformedJson(r);
        if (malformed !== undefined) {
          report(chain, `entry ${r.id} (seq ${r.seq}): ${malformed}; the write path never stores that`);
          continue;
        }
        const allocations = (r.allocations ?? []) as Array<{ lot_id: string; amount: string }>;
        const expected = entryHash(chain.previous, {
          id: r.id,
          tenantId: r.tenant_id,
          customerId: r.customer_id,
          currencyCode: r.currency_code,
          type: r.type,
          origin: r.origin ?? '',
          amount: BigInt(r.amount),
          closingBalance: BigInt(r.closing_balance),
          description: r.description,
          creditType: r.credit_type,
          reference: r.reference,
          doneBy: r.done_by,
          createTimeMicros: BigInt(r.create_micros),
          expireTimeMicros: r.expire_micros === null ? undefined : BigInt(r.expire_micros),
          reversesId: r.reverses_id ?? undefined,
          allocations: allocations.map((a) => ({ lotId: a.lot_id, amount: BigInt(a.amount) })),
          metadata: r.metadata as Record<string, string>,
        });
        if (r.hash !== expected) report(chain, `entry ${r.id} (seq ${r.seq}) has hash ${r.hash ?? '(none)'}, expected ${expected}`);
        chain.previous = r.hash ?? '';
      }
      // A chain walked to its end must end at the hash its balance keeps:
      // otherwise entries after it are gone (the last one deleted, the sums
      // adjusted to match, is invisible to every other check).
      walking.forEach((chain, k) => {
        if (counts[k]! < PER_BALANCE && !chain.broken && chain.previous !== (chain.last_hash ?? '')) {
          report(chain, `the last entry (seq ${chain.seq}) has hash ${chain.previous || '(none)'}, but the balance's last hash is ${chain.last_hash ?? '(none)'}: entries after it are missing`);
        }
      });
      // Chains that filled their share may have more: they go on from their last seq.
      walking = walking.filter((_, k) => counts[k] === PER_BALANCE);
    }
    if (page.length < BALANCES) return problems;
    const last = page[page.length - 1]!;
    after = { tenantId: last.tenant_id, customerId: last.customer_id, currencyCode: last.currency_code };
  }
}

/** Everything `credits verify` checks, read in one snapshot. */
export interface LedgerVerification {
  audit: LedgerAudit;
  /** Lot, hold and hash chain problems. */
  details: LedgerDetailProblem[];
}

/**
 * The whole ledger check (`credits verify`): balances and closing-balance
 * chains (runLedgerAudit), lots and holds (one statement), and every hash
 * chain recomputed. Outside a transaction it opens a REPEATABLE READ one, so
 * that every part reads the same snapshot while writes go on.
 * `hashPageSize`: entries of each balance the hash walk reads per statement
 * (default 500; tests make it small so that chains cross statements).
 */
export async function verifyLedger(manager: EntityManager, options: { tenantId?: string; hashPageSize?: number } = {}): Promise<LedgerVerification> {
  const run = async (m: EntityManager): Promise<LedgerVerification> => {
    const audit = await runLedgerAudit(m, options);
    const details = [...(await auditDetails(m, options)), ...(await auditHashes(m, options))];
    return { audit, details };
  };
  if (manager.queryRunner?.isTransactionActive) return run(manager);
  return manager.connection.transaction('REPEATABLE READ', run);
}

/** verifyLedger's problems as one list (empty: healthy), for tests and callers that only need the verdict. */
export async function ledgerProblems(manager: EntityManager, options: { tenantId?: string } = {}): Promise<Array<LedgerProblem | LedgerDetailProblem>> {
  const { audit, details } = await verifyLedger(manager, options);
  return [...audit.problems, ...details];
}
