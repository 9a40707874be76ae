import type { EntityManager } from 'typeorm';
import { countedSql } from './redemption-status.rules';

export type RedemptionProblemKind =
  /** A coupon's stored confirmed count differs from its CONFIRMED redemptions (so its redemption_count is wrong). */
  | 'COUPON_REDEMPTION_COUNT_MISMATCH'
  /** A credit's stored confirmed count differs from its CONFIRMED redemptions (so its redemption_count and state are wrong). */
  | 'CREDIT_REDEMPTION_COUNT_MISMATCH'
  /** A coupon's uses that count (confirmed plus unexpired holds) exceed its max_redemptions. */
  | 'COUPON_OVER_LIMIT'
  /** A customer's uses of a coupon that count exceed its max_redemptions_per_customer. */
  | 'COUPON_CUSTOMER_OVER_LIMIT'
  /** A credit's uses that count exceed its uses. */
  | 'CREDIT_OVER_USES'
  /** A coupon with redemptions is not marked redeemed (its terms would not be frozen). */
  | 'COUPON_NOT_MARKED_REDEEMED'
  /** A redemption of a coupon that does not exist (of its tenant). */
  | 'REDEMPTION_COUPON_MISSING'
  /** A credit link (customer_credit_redemptions) whose redemption or credit does not exist (of its tenant). */
  | 'CREDIT_LINK_BROKEN'
  /** A REDEMPTION_CREATED event stored by reference whose redemption does not exist (of its tenant): readers cannot render it. */
  | 'EVENT_REDEMPTION_MISSING';

/**
 * One broken redemption invariant, in the shape of the ledger's
 * LedgerDetailProblem so that `credits verify` prints both alike:
 * `customerId` names the coupon by its code (`coupon <code>`) or the credit
 * (`credit <id> of <customer>`); there is no currency.
 */
export interface RedemptionProblem {
  kind: RedemptionProblemKind;
  tenantSlug: string;
  tenantId: string;
  customerId: string;
  currencyCode: string;
  message: string;
}

/** At most this many problems are listed (a broken database could have millions). */
const MAX_LISTED = 1000;

/**
 * Checks the redemption counts of every coupon and customer credit (of one
 * tenant, with `tenantId`) at one instant: each stored confirmed count equals
 * its CONFIRMED redemptions, so that each `redemption_count` the API shows
 * (confirmed plus held ones whose hold_until has not passed) equals those
 * redemptions; no limit is passed by the uses that count; a coupon with
 * redemptions is marked redeemed; every redemption's coupon and every credit
 * link's redemption and credit exist (what foreign keys checked at every
 * write until migration 1765300000000), and so does every redemption a
 * REDEMPTION_CREATED event names (stored by reference since 1765400000000). Runs in one REPEATABLE READ snapshot
 * (or the caller's transaction).
 */
export async function verifyRedemptions(manager: EntityManager, options: { tenantId?: string } = {}): Promise<RedemptionProblem[]> {
  const run = async (m: EntityManager): Promise<RedemptionProblem[]> => {
    const params: unknown[] = [MAX_LISTED];
    const tenant = (alias: string) => (options.tenantId === undefined ? 'true' : `${alias}.tenant_id = $${params.push(options.tenantId)}`);
    const counted = countedSql('s', 'now()');
    const confirmed = `(s.status IS NULL OR s.status = 'CONFIRMED')`;
    const rows: Array<{ kind: RedemptionProblemKind; tenant_id: string; tenant_slug: string | null; subject: string; detail: string }> = await m.query(
      `WITH coupon_uses AS (
         SELECT c.tenant_id, c.id, c.code, c.redemption_count AS stored, c.max_redemptions, c.redeemed,
                count(r.id) AS recorded,
                count(r.id) FILTER (WHERE ${confirmed}) AS confirmed,
                count(r.id) FILTER (WHERE ${counted}) AS counted
           FROM coupons c
           LEFT JOIN coupon_redemptions r ON r.tenant_id = c.tenant_id AND r.coupon_id = c.id
           LEFT JOIN coupon_redemption_states s ON s.redemption_id = r.id
          WHERE ${tenant('c')}
          GROUP BY c.tenant_id, c.id
       ), customer_uses AS (
         SELECT c.tenant_id, c.code, r.customer_id, c.max_redemptions_per_customer AS max, count(*) AS counted
           FROM coupons c
           JOIN coupon_redemptions r ON r.tenant_id = c.tenant_id AND r.coupon_id = c.id
           LEFT JOIN coupon_redemption_states s ON s.redemption_id = r.id
          WHERE ${tenant('c')} AND c.max_redemptions_per_customer IS NOT NULL AND ${counted}
          GROUP BY c.tenant_id, c.id, r.customer_id
       ), credit_uses AS (
         SELECT c.tenant_id, c.id, c.customer_id, c.redemption_count AS stored, c.uses_total,
                count(l.redemption_id) FILTER (WHERE ${confirmed}) AS confirmed,
                count(l.redemption_id) FILTER (WHERE ${counted}) AS counted
           FROM customer_credits c
           LEFT JOIN customer_credit_redemptions l ON l.tenant_id = c.tenant_id AND l.credit_id = c.id
           LEFT JOIN coupon_redemption_states s ON s.redemption_id = l.redemption_id
          WHERE ${tenant('c')}
          GROUP BY c.tenant_id, c.id
       ), problems AS (
         SELECT 'COUPON_REDEMPTION_COUNT_MISMATCH' AS kind, tenant_id, 'coupon ' || code AS subject,
                format('stored confirmed count %s but %s confirmed redemptions, so redemption_count shows %s for %s held or confirmed',
                       stored, confirmed, stored + counted - confirmed, counted) AS detail
           FROM coupon_uses WHERE stored <> confirmed
         UNION ALL
         SELECT 'COUPON_OVER_LIMIT', tenant_id, 'coupon ' || code, format('%s held or confirmed redemptions, over max_redemptions %s', counted, max_redemptions)
           FROM coupon_uses WHERE counted > max_redemptions
         UNION ALL
         SELECT 'COUPON_NOT_MARKED_REDEEMED', tenant_id, 'coupon ' || code, format('%s redemptions but not marked redeemed', recorded)
           FROM coupon_uses WHERE recorded > 0 AND NOT redeemed
         UNION ALL
         SELECT 'COUPON_CUSTOMER_OVER_LIMIT', tenant_id, 'coupon ' || code,
                format('customer %s has %s held or confirmed redemptions, over max_redemptions_per_customer %s', customer_id, counted, max)
           FROM customer_uses WHERE counted > max
         UNION ALL
         SELECT 'CREDIT_REDEMPTION_COUNT_MISMATCH', tenant_id, format('credit %s of %s', id, customer_id),
                format('stored confirmed count %s but %s confirmed redemptions, so redemption_count shows %s for %s held or confirmed',
                       stored, confirmed, stored + counted - confirmed, counted)
           FROM credit_uses WHERE stored <> confirmed
         UNION ALL
         SELECT 'CREDIT_OVER_USES', tenant_id, format('credit %s of %s', id, customer_id), format('%s held or confirmed uses, over its %s uses', counted, uses_total)
           FROM credit_uses WHERE counted > uses_total
         UNION ALL
         SELECT 'REDEMPTION_COUPON_MISSING', r.tenant_id, 'redemption ' || r.id, format('of coupon %s, which does not exist', r.coupon_id)
           FROM coupon_redemptions r
          WHERE ${tenant('r')} AND NOT EXISTS (SELECT 1 FROM coupons c WHERE c.tenant_id = r.tenant_id AND c.id = r.coupon_id)
         UNION ALL
         SELECT 'CREDIT_LINK_BROKEN', b.tenant_id, 'redemption ' || b.redemption_id,
                concat_ws(' and ',
                  CASE WHEN b.no_redemption THEN 'linked to a credit, but the redemption does not exist' END,
                  CASE WHEN b.no_credit THEN format('linked to credit %s, which does not exist', b.credit_id) END)
           FROM (SELECT l.tenant_id, l.redemption_id, l.credit_id,
                        NOT EXISTS (SELECT 1 FROM coupon_redemptions r WHERE r.id = l.redemption_id AND r.tenant_id = l.tenant_id) AS no_redemption,
                        NOT EXISTS (SELECT 1 FROM customer_credits c WHERE c.tenant_id = l.tenant_id AND c.id = l.credit_id) AS no_credit
                   FROM customer_credit_redemptions l
                  WHERE ${tenant('l')}) b
          WHERE b.no_redemption OR b.no_credit
         UNION ALL
         SELECT 'EVENT_REDEMPTION_MISSING', e.tenant_id, 'event ' || e.id, format('REDEMPTION_CREATED of redemption %s, which does not exist', e.redemption_id)
           FROM events e
          WHERE ${tenant('e')} AND e.redemption_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM coupon_redemptions r WHERE r.id = e.redemption_id AND r.tenant_id = e.tenant_id)
       )
       SELECT p.kind, p.tenant_id, t.slug AS tenant_slug, p.subject, p.detail
         FROM problems p LEFT JOIN tenants t ON t.id = p.tenant_id
        ORDER BY t.slug, p.subject, p.kind
        LIMIT $1`,
      params,
    );
    return rows.map((r) => {
      const slug = r.tenant_slug ?? `<unknown tenant ${r.tenant_id}>`;
      return { kind: r.kind, tenantSlug: slug, tenantId: r.tenant_id, customerId: r.subject, currencyCode: '', message: `tenant ${slug}, ${r.subject}: ${r.detail}` };
    });
  };
  if (manager.queryRunner?.isTransactionActive) return run(manager);
  return manager.connection.transaction('REPEATABLE READ', run);
}
