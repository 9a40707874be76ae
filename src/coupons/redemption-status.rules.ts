import { DomainError, ErrorReason, type Violations } from '../common/domain-error';
import { checkFutureTime, DAYS } from '../common/time-rules';

export type RedemptionStatus = 'HELD' | 'CONFIRMED' | 'CANCELED';

/** The longest a redemption may be held: hold_until at most 7 days ahead. */
export const MAX_HOLD_MS = DAYS(7);

/** What is stored about a redemption's status: its coupon_redemption_states row, if any. */
export interface StoredRedemptionStatus {
  /** null: no state row, i.e. confirmed at once. */
  status: RedemptionStatus | null;
  holdUntil: Date | null;
  /** The state row's update_time; null without one. */
  updateTime: Date | null;
  createTime: Date;
}

/**
 * Where a redemption stands at `now`: without a state row CONFIRMED (since it
 * was recorded); a stored CONFIRMED or CANCELED as stored; a stored HELD is
 * HELD until `hold_until` and CANCELED from that instant on (updated then),
 * before anything is written, so a lapsed hold frees its use at once for
 * everyone. The expiry sweep later stores that very state (CANCELED, updated
 * at hold_until: CouponRepository.cancelLapsedHolds), so a reader sees the
 * same before and after it. countedSql restates which of these count.
 */
export function redemptionStatusAt(stored: StoredRedemptionStatus, now: Date): { status: RedemptionStatus; updateTime: Date } {
  if (stored.status === null) return { status: 'CONFIRMED', updateTime: stored.createTime };
  if (stored.status === 'HELD' && stored.holdUntil!.getTime() <= now.getTime()) return { status: 'CANCELED', updateTime: stored.holdUntil! };
  return { status: stored.status, updateTime: stored.updateTime ?? stored.createTime };
}

/**
 * In SQL, for a redemption's state row `s` (LEFT JOINed: NULL when there is
 * none) at the instant `nowParam`: whether the redemption counts toward the
 * limits (CONFIRMED, or HELD and not lapsed), as redemptionStatusAt says.
 */
export function countedSql(s: string, nowParam: string): string {
  return `(${s}.status IS NULL OR ${s}.status = 'CONFIRMED' OR (${s}.status = 'HELD' AND ${s}.hold_until > ${nowParam}))`;
}

/** Checks an optional hold_until: after `now`, at most 7 days ahead. */
export function checkHoldUntil(v: Violations, holdUntil: Date | undefined, now: Date): Date | undefined {
  if (holdUntil !== undefined) checkFutureTime(v, 'hold_until', holdUntil, now, MAX_HOLD_MS, '7 days');
  return holdUntil;
}

/** The transition a redemption is asked for. */
export type RedemptionTransition = 'CONFIRM' | 'CANCEL';

/**
 * Why `transition` is not allowed from `status`, or undefined: anything on a
 * CANCELED redemption is REDEMPTION_CANCELED; CONFIRM needs HELD
 * (REDEMPTION_NOT_HELD); CANCEL takes HELD or CONFIRMED. `lapsedAt`: when a
 * hold's hold_until passed (for the message).
 */
export function transitionRefusal(
  redemptionId: string,
  status: RedemptionStatus,
  transition: RedemptionTransition,
  lapsedAt: Date | undefined,
): DomainError | undefined {
  const metadata = { redemption_id: redemptionId, status };
  if (status === 'CANCELED') {
    const why = lapsedAt === undefined ? 'was canceled' : `was held until ${lapsedAt.toISOString()} and lapsed unconfirmed`;
    return new DomainError(ErrorReason.RedemptionCanceled, `Redemption ${redemptionId} ${why}; it cannot change any more.`, [], metadata);
  }
  if (transition === 'CONFIRM' && status !== 'HELD') {
    return new DomainError(ErrorReason.RedemptionNotHeld, `Redemption ${redemptionId} is ${status}, not HELD: only a held redemption can be confirmed.`, [], metadata);
  }
  return undefined;
}

/** When a redemption's hold lapsed (it reads CANCELED from its hold_until on), or undefined when it did not. */
export function lapsedAt(redemption: { status: RedemptionStatus; holdUntil: Date | null; updateTime: Date }): Date | undefined {
  const lapsed = redemption.status === 'CANCELED' && redemption.holdUntil !== null && redemption.updateTime.getTime() === redemption.holdUntil.getTime();
  return lapsed ? redemption.holdUntil! : undefined;
}
