/**
 * Every reason a call can fail with, in UPPER_SNAKE as callers see it in
 * google.rpc.ErrorInfo. Each has exactly one gRPC code, assigned in
 * src/grpc/error-status.ts (the compiler checks that none is missing).
 */
export enum ErrorReason {
  ValidationFailed = 'VALIDATION_FAILED',
  ApiKeyMissing = 'API_KEY_MISSING',
  ApiKeyInvalid = 'API_KEY_INVALID',
  ScopeMissing = 'API_KEY_SCOPE_MISSING',
  PromotionalCreditNotFound = 'PROMOTIONAL_CREDIT_NOT_FOUND',
  InsufficientBalance = 'INSUFFICIENT_BALANCE',
  BalanceLimitExceeded = 'BALANCE_LIMIT_EXCEEDED',
  NotReversible = 'NOT_REVERSIBLE',
  AlreadyReversed = 'ALREADY_REVERSED',
  NothingToReverse = 'NOTHING_TO_REVERSE',
  HoldNotFound = 'HOLD_NOT_FOUND',
  HoldNotActive = 'HOLD_NOT_ACTIVE',
  CouponNotFound = 'COUPON_NOT_FOUND',
  CouponCodeAlreadyExists = 'COUPON_CODE_ALREADY_EXISTS',
  CouponRedeemed = 'COUPON_REDEEMED',
  CouponDisabled = 'COUPON_DISABLED',
  CouponExpired = 'COUPON_EXPIRED',
  CouponNotApplicable = 'COUPON_NOT_APPLICABLE',
  CouponMaxRedemptionsReached = 'COUPON_MAX_REDEMPTIONS_REACHED',
  CouponCustomerLimitReached = 'COUPON_CUSTOMER_LIMIT_REACHED',
  CouponHasCredits = 'COUPON_HAS_CREDITS',
  CreditNotFound = 'CREDIT_NOT_FOUND',
  CreditAlreadyRedeemed = 'CREDIT_ALREADY_REDEEMED',
  CreditExpired = 'CREDIT_EXPIRED',
  CreditRevoked = 'CREDIT_REVOKED',
  RedemptionNotFound = 'REDEMPTION_NOT_FOUND',
  RedemptionNotHeld = 'REDEMPTION_NOT_HELD',
  RedemptionCanceled = 'REDEMPTION_CANCELED',
  CursorExpired = 'CURSOR_EXPIRED',
  ConcurrencyConflict = 'CONCURRENCY_CONFLICT',
  IdempotencyKeyReused = 'IDEMPOTENCY_KEY_REUSED',
  IdempotencyKeyInUse = 'IDEMPOTENCY_KEY_IN_USE',
  DatabaseUnavailable = 'DATABASE_UNAVAILABLE',
  ShuttingDown = 'SHUTTING_DOWN',
  DeadlineExceeded = 'DEADLINE_EXCEEDED',
  /** The caller cancelled (a stream it stopped reading); it is gone, so only the log line shows it. */
  Cancelled = 'CANCELLED',
  Internal = 'INTERNAL',
}

/** One bad request field, named by its proto path (snake_case). */
export interface FieldViolation {
  field: string;
  description: string;
}

/** An expected failure with a reason and a sentence a developer can act on. */
export class DomainError extends Error {
  constructor(
    readonly reason: ErrorReason,
    message: string,
    readonly violations: readonly FieldViolation[] = [],
    readonly metadata: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

/** How many field names a VALIDATION_FAILED message lists; BadRequest carries the violations. */
const MAX_FIELDS_NAMED = 10;

/** Collects every bad field of a request so the caller learns them all at once. */
export class Violations {
  private readonly list: FieldViolation[] = [];

  add(field: string, description: string): void {
    this.list.push({ field, description });
  }

  get any(): boolean {
    return this.list.length > 0;
  }

  /** Throws VALIDATION_FAILED listing every violation, if there is one. */
  throwIfAny(): void {
    if (this.list.length === 0) return;
    const first = this.list[0]!;
    // The message travels in a header: name the first few fields, not thousands (a 500-entry batch of junk).
    const named = this.list.slice(0, MAX_FIELDS_NAMED).map((v) => v.field);
    if (this.list.length > MAX_FIELDS_NAMED) named.push(`and ${this.list.length - MAX_FIELDS_NAMED} more`);
    const message =
      this.list.length === 1
        ? `Invalid request: ${first.field} ${first.description}.`
        : `Invalid request: ${this.list.length} fields are invalid (${named.join(', ')}); see BadRequest details.`;
    throw new DomainError(ErrorReason.ValidationFailed, message, this.list);
  }
}
