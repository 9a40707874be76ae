import { status, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { BadRequest, ErrorInfo } from '../../gen/google/rpc/error_details';
import { Status } from '../../gen/google/rpc/status';

/** The name of a gRPC status code, e.g. `"FAILED_PRECONDITION"`. */
export type StatusName = keyof typeof status;

/** One bad request field, named by its proto path in snake_case (`customer_id`). */
export interface FieldViolation {
  field: string;
  description: string;
}

const ERROR_INFO = 'type.googleapis.com/google.rpc.ErrorInfo';
const BAD_REQUEST = 'type.googleapis.com/google.rpc.BadRequest';

/**
 * Every failed call of the credits client throws this. `code` is the gRPC
 * status; `reason` (UPPER_SNAKE, e.g. `INSUFFICIENT_BALANCE`), `metadata` and
 * `fieldViolations` come from the `google.rpc.Status` the server sends in
 * `grpc-status-details-bin`. `message` is the server's sentence.
 */
export class CreditsError extends Error {
  /** gRPC status code (`status.FAILED_PRECONDITION` is 9). */
  readonly code: status;
  /** The code's name, e.g. `"FAILED_PRECONDITION"`. */
  readonly codeName: StatusName;
  /** `google.rpc.ErrorInfo.reason`, e.g. `"INSUFFICIENT_BALANCE"`; undefined when the server sent none. */
  readonly reason: string | undefined;
  /** `google.rpc.ErrorInfo.domain` (`"credits.v1"` for the credits service). */
  readonly domain: string | undefined;
  /** `google.rpc.ErrorInfo.metadata`, e.g. `{ balance: "500", requested: "501" }`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** `google.rpc.BadRequest.field_violations`: every bad field of a VALIDATION_FAILED request. */
  readonly fieldViolations: readonly FieldViolation[];
  /** The full method path, e.g. `/credits.v1.PromotionalCreditService/DeductPromotionalCredits`. */
  readonly method: string | undefined;
  /** How many attempts were made (more than 1 when the client retried). */
  readonly attempts: number;
  /**
   * The call's `x-request-id`: the service's log line of each attempt that
   * reached it carries it as `request_id`. The one the service answered in
   * its trailers, else the one the client sent; undefined for errors made
   * without a call.
   */
  readonly requestId: string | undefined;
  /** The response trailers as grpc-js received them (undefined for client-side failures). */
  readonly grpcMetadata: Metadata | undefined;

  constructor(init: {
    code: status;
    message: string;
    reason?: string;
    domain?: string;
    metadata?: Record<string, string>;
    fieldViolations?: FieldViolation[];
    method?: string;
    attempts?: number;
    requestId?: string;
    grpcMetadata?: Metadata;
    cause?: unknown;
  }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'CreditsError';
    this.code = init.code;
    this.codeName = (status[init.code] as StatusName | undefined) ?? 'UNKNOWN';
    this.reason = init.reason;
    this.domain = init.domain;
    this.metadata = init.metadata ?? {};
    this.fieldViolations = init.fieldViolations ?? [];
    this.method = init.method;
    this.attempts = init.attempts ?? 1;
    this.requestId = init.requestId;
    this.grpcMetadata = init.grpcMetadata;
  }
}

/** True for the errors grpc-js hands to a call's callback. */
export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && 'details' in err;
}

/** Decodes google.rpc.Status (ErrorInfo, BadRequest) from a grpc-js error's trailers. */
export function toCreditsError(err: ServiceError, context: { method?: string; attempts?: number; requestId?: string } = {}): CreditsError {
  let reason: string | undefined;
  let domain: string | undefined;
  let metadata: Record<string, string> = {};
  const fieldViolations: FieldViolation[] = [];
  const raw = err.metadata?.get('grpc-status-details-bin')[0];
  if (raw instanceof Uint8Array) {
    try {
      for (const detail of Status.decode(raw).details) {
        if (detail.typeUrl === ERROR_INFO) {
          const info = ErrorInfo.decode(detail.value);
          reason = info.reason;
          domain = info.domain;
          metadata = info.metadata;
        } else if (detail.typeUrl === BAD_REQUEST) {
          for (const v of BadRequest.decode(detail.value).fieldViolations) fieldViolations.push({ field: v.field, description: v.description });
        }
      }
    } catch {
      // Undecodable details (a proxy's, not ours): the code and message still stand.
    }
  }
  return new CreditsError({
    code: err.code,
    message: err.details || status[err.code] || 'call failed',
    reason,
    domain,
    metadata,
    fieldViolations,
    method: context.method,
    attempts: context.attempts,
    requestId: answeredRequestId(err.metadata) ?? context.requestId,
    grpcMetadata: err.metadata,
    cause: err,
  });
}

/** The `x-request-id` the service answered in a call's trailers. */
function answeredRequestId(metadata: Metadata | undefined): string | undefined {
  const value = metadata?.get('x-request-id')[0];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** What a call or stream of a closed client ends with. */
export function clientClosed(method: string, attempts: number, requestId?: string): CreditsError {
  return new CreditsError({ code: status.CANCELLED, message: 'The client was closed.', method, attempts, requestId });
}
