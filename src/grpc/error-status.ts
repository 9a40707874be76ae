import { Metadata, status } from '@grpc/grpc-js';
import { Any } from '../../gen/google/protobuf/any';
import { BadRequest, ErrorInfo } from '../../gen/google/rpc/error_details';
import { Status } from '../../gen/google/rpc/status';
import { DomainError, ErrorReason } from '../common/domain-error';
import { toWellFormed } from '../common/text';
import { isDatabaseUnavailable, isRetryableConflict, isStatementCut, PoolExhaustedError } from '../db/db-errors';
import type { StoredError } from '../idempotency/idempotency';

export const ERROR_DOMAIN = 'credits.v1';

/**
 * The one place that gives every error reason its gRPC code, a reason a line.
 * The mapped type makes the compiler refuse a reason without a code, as the
 * switch with assertUnreachable did, without repeating `case …: return …`.
 */
const CODE_OF_REASON: { readonly [R in ErrorReason]: status } = {
  [ErrorReason.ValidationFailed]: status.INVALID_ARGUMENT,
  [ErrorReason.IdempotencyKeyReused]: status.INVALID_ARGUMENT,
  [ErrorReason.ApiKeyMissing]: status.UNAUTHENTICATED,
  [ErrorReason.ApiKeyInvalid]: status.UNAUTHENTICATED,
  [ErrorReason.ScopeMissing]: status.PERMISSION_DENIED,
  [ErrorReason.PromotionalCreditNotFound]: status.NOT_FOUND,
  [ErrorReason.CouponNotFound]: status.NOT_FOUND,
  [ErrorReason.CreditNotFound]: status.NOT_FOUND,
  [ErrorReason.HoldNotFound]: status.NOT_FOUND,
  [ErrorReason.RedemptionNotFound]: status.NOT_FOUND,
  [ErrorReason.InsufficientBalance]: status.FAILED_PRECONDITION,
  [ErrorReason.BalanceLimitExceeded]: status.FAILED_PRECONDITION,
  [ErrorReason.NotReversible]: status.FAILED_PRECONDITION,
  [ErrorReason.AlreadyReversed]: status.FAILED_PRECONDITION,
  [ErrorReason.NothingToReverse]: status.FAILED_PRECONDITION,
  [ErrorReason.HoldNotActive]: status.FAILED_PRECONDITION,
  [ErrorReason.CouponRedeemed]: status.FAILED_PRECONDITION,
  [ErrorReason.CouponDisabled]: status.FAILED_PRECONDITION,
  [ErrorReason.CouponExpired]: status.FAILED_PRECONDITION,
  [ErrorReason.CouponNotApplicable]: status.FAILED_PRECONDITION,
  [ErrorReason.CouponMaxRedemptionsReached]: status.FAILED_PRECONDITION,
  [ErrorReason.CouponCustomerLimitReached]: status.FAILED_PRECONDITION,
  [ErrorReason.CouponHasCredits]: status.FAILED_PRECONDITION,
  [ErrorReason.CreditAlreadyRedeemed]: status.FAILED_PRECONDITION,
  [ErrorReason.CreditExpired]: status.FAILED_PRECONDITION,
  [ErrorReason.CreditRevoked]: status.FAILED_PRECONDITION,
  [ErrorReason.RedemptionNotHeld]: status.FAILED_PRECONDITION,
  [ErrorReason.RedemptionCanceled]: status.FAILED_PRECONDITION,
  [ErrorReason.CursorExpired]: status.FAILED_PRECONDITION,
  [ErrorReason.CouponCodeAlreadyExists]: status.ALREADY_EXISTS,
  [ErrorReason.ConcurrencyConflict]: status.ABORTED,
  [ErrorReason.IdempotencyKeyInUse]: status.ABORTED,
  [ErrorReason.DatabaseUnavailable]: status.UNAVAILABLE,
  [ErrorReason.ShuttingDown]: status.UNAVAILABLE,
  [ErrorReason.DeadlineExceeded]: status.DEADLINE_EXCEEDED,
  [ErrorReason.Cancelled]: status.CANCELLED,
  [ErrorReason.Internal]: status.INTERNAL,
};

export function codeOf(reason: ErrorReason): status {
  return CODE_OF_REASON[reason];
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
      message:
        err instanceof PoolExhaustedError
          ? "Every database connection of this server was busy (slow calls, or statements the database has not answered); nothing was written; retry with backoff."
          : 'The credits database is unavailable; retry with backoff.',
      violations: [],
      metadata: {},
      expected: true,
    };
  }
  if (isRetryableConflict(err)) {
    // A deadlock or serialization failure where nothing retried it (the write
    // paths do, see retryConflicts): the transaction rolled back; a retry may
    // well go through. Not INTERNAL, which the client does not retry; but a
    // path without retries or locks out of order is a bug: logged as one,
    // with PostgreSQL's error.
    return {
      code: status.ABORTED,
      reason: ErrorReason.ConcurrencyConflict,
      message: 'The request conflicted with concurrent requests; nothing was written; retry it.',
      violations: [],
      metadata: {},
      expected: false,
    };
  }
  if (isStatementCut(err)) {
    // Most often a wait on a row lock that other work held past the statement timeout.
    return {
      code: status.ABORTED,
      reason: ErrorReason.ConcurrencyConflict,
      message: 'The database did not finish the call in time (it waited on other work, or ran past the statement timeout); nothing was written; retry with backoff.',
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

/** Errors that are the request's fate; others (UNAVAILABLE, ABORTED, INTERNAL) may go away on a retry. */
const FINAL_CODES = new Set([status.INVALID_ARGUMENT, status.NOT_FOUND, status.FAILED_PRECONDITION, status.ALREADY_EXISTS]);

/** The error an idempotency record keeps and replays: what the caller was told, when it is final (see Idempotency). */
export function finalErrorOf(err: unknown): StoredError | undefined {
  if (!(err instanceof DomainError)) return undefined;
  const error = toCallerError(err);
  if (!FINAL_CODES.has(error.code)) return undefined;
  return { code: error.code, reason: error.reason, message: error.message, violations: [...error.violations], metadata: { ...error.metadata } };
}

/** A stored error as the caller is told it again. */
export function fromStoredError(stored: StoredError): CallerError {
  return {
    code: stored.code as status,
    reason: stored.reason as ErrorReason,
    message: stored.message,
    violations: stored.violations,
    metadata: stored.metadata,
    expected: true,
  };
}

/**
 * About the most bytes of google.rpc.BadRequest one error carries. Status
 * details travel in a trailer, i.e. an HTTP/2 header block, which clients cap
 * (a grpc-js client never sees an answer whose trailers pass about 100 KB and
 * hangs until its deadline; gRPC core clients allow far less by default), so a
 * request with thousands of bad fields (a 500-entry batch of junk) lists the
 * first violations that fit, and ErrorInfo metadata `violations_total` and
 * `violations_listed` say how many there are and how many are listed.
 */
export const MAX_BAD_REQUEST_BYTES = 4 * 1024;

/** The violations that fit in MAX_BAD_REQUEST_BYTES, in order; at least one. */
function listedViolations(violations: CallerError['violations']): CallerError['violations'] {
  let bytes = 0;
  let count = 0;
  for (const v of violations) {
    bytes += Buffer.byteLength(v.field) + Buffer.byteLength(v.description) + 8; // + tags and lengths
    if (bytes > MAX_BAD_REQUEST_BYTES && count > 0) break;
    count++;
  }
  return violations.slice(0, count);
}

/** A grpc-js error object carrying google.rpc.Status in grpc-status-details-bin. */
export function toServiceError(error: CallerError, trailer: Metadata = new Metadata()): { code: status; details: string; metadata: Metadata } {
  const listed = listedViolations(error.violations);
  const metadata: Record<string, string> = { ...error.metadata };
  if (listed.length < error.violations.length) {
    metadata['violations_total'] = String(error.violations.length);
    metadata['violations_listed'] = String(listed.length);
  }
  const details: Any[] = [
    {
      typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo',
      value: Buffer.from(ErrorInfo.encode({ reason: error.reason, domain: ERROR_DOMAIN, metadata }).finish()),
    },
  ];
  if (listed.length > 0) {
    details.push({
      typeUrl: 'type.googleapis.com/google.rpc.BadRequest',
      value: Buffer.from(
        BadRequest.encode({
          fieldViolations: listed.map((v) => ({ field: v.field, description: v.description, reason: '', localizedMessage: undefined })),
        }).finish(),
      ),
    });
  }
  // grpc-js sends the message through encodeURI, which throws on a lone surrogate (and takes the server down).
  const message = toWellFormed(error.message);
  const statusProto = Status.encode({ code: error.code, message, details }).finish();
  trailer.set('grpc-status-details-bin', Buffer.from(statusProto));
  return { code: error.code, details: message, metadata: trailer };
}
