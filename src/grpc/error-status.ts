import { Metadata, status } from '@grpc/grpc-js';
import { Any } from '../../gen/google/protobuf/any';
import { BadRequest, ErrorInfo } from '../../gen/google/rpc/error_details';
import { Status } from '../../gen/google/rpc/status';
import { assertUnreachable, DomainError, ErrorReason } from '../common/domain-error';
import { isDatabaseUnavailable } from '../db/db-errors';

export const ERROR_DOMAIN = 'credits.v1';

/** The one place that gives every error reason its gRPC code. */
export function codeOf(reason: ErrorReason): status {
  switch (reason) {
    case ErrorReason.ValidationFailed:
    case ErrorReason.IdempotencyKeyReused:
      return status.INVALID_ARGUMENT;
    case ErrorReason.ApiKeyMissing:
    case ErrorReason.ApiKeyInvalid:
      return status.UNAUTHENTICATED;
    case ErrorReason.ScopeMissing:
      return status.PERMISSION_DENIED;
    case ErrorReason.PromotionalCreditNotFound:
    case ErrorReason.CouponNotFound:
    case ErrorReason.CreditNotFound:
      return status.NOT_FOUND;
    case ErrorReason.InsufficientBalance:
    case ErrorReason.BalanceLimitExceeded:
    case ErrorReason.CouponRedeemed:
    case ErrorReason.CouponDisabled:
    case ErrorReason.CouponExpired:
    case ErrorReason.CouponNotApplicable:
    case ErrorReason.CouponMaxRedemptionsReached:
    case ErrorReason.CouponCustomerLimitReached:
    case ErrorReason.CouponHasCredits:
    case ErrorReason.CreditAlreadyRedeemed:
    case ErrorReason.CreditExpired:
    case ErrorReason.CreditRevoked:
      return status.FAILED_PRECONDITION;
    case ErrorReason.CouponCodeAlreadyExists:
      return status.ALREADY_EXISTS;
    case ErrorReason.ConcurrencyConflict:
    case ErrorReason.IdempotencyKeyInUse:
      return status.ABORTED;
    case ErrorReason.DatabaseUnavailable:
    case ErrorReason.ShuttingDown:
      return status.UNAVAILABLE;
    case ErrorReason.DeadlineExceeded:
      return status.DEADLINE_EXCEEDED;
    case ErrorReason.Internal:
      return status.INTERNAL;
    default:
      return assertUnreachable(reason);
  }
}

/** What the caller is told: never SQL, stack or driver text. */
export interface CallerError {
  code: status;
  reason: ErrorReason;
  message: string;
  violations: DomainError['violations'];
  metadata: DomainError['metadata'];
  /** False for errors that are bugs: they are logged with their details. */
  expected: boolean;
}

/** Turns anything thrown below the transport into what the caller may see. */
export function toCallerError(err: unknown): CallerError {
  if (err instanceof DomainError) {
    return { code: codeOf(err.reason), reason: err.reason, message: err.message, violations: err.violations, metadata: err.metadata, expected: true };
  }
  if (isDatabaseUnavailable(err)) {
    return {
      code: status.UNAVAILABLE,
      reason: ErrorReason.DatabaseUnavailable,
      message: 'The credits database is unavailable; retry with backoff.',
      violations: [],
      metadata: {},
      expected: true,
    };
  }
  return {
    code: status.INTERNAL,
    reason: ErrorReason.Internal,
    message: 'Internal error; it has been logged. Retry later or contact the credits team.',
    violations: [],
    metadata: {},
    expected: false,
  };
}

/** A grpc-js error object carrying google.rpc.Status in grpc-status-details-bin. */
export function toServiceError(error: CallerError, trailer: Metadata = new Metadata()): { code: status; details: string; metadata: Metadata } {
  const details: Any[] = [
    {
      typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo',
      value: Buffer.from(ErrorInfo.encode({ reason: error.reason, domain: ERROR_DOMAIN, metadata: { ...error.metadata } }).finish()),
    },
  ];
  if (error.violations.length > 0) {
    details.push({
      typeUrl: 'type.googleapis.com/google.rpc.BadRequest',
      value: Buffer.from(
        BadRequest.encode({
          fieldViolations: error.violations.map((v) => ({ field: v.field, description: v.description, reason: '', localizedMessage: undefined })),
        }).finish(),
      ),
    });
  }
  const statusProto = Status.encode({ code: error.code, message: error.message, details }).finish();
  trailer.set('grpc-status-details-bin', Buffer.from(statusProto));
  return { code: error.code, details: error.message, metadata: trailer };
}
