import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { BadRequest, ErrorInfo } from '../../gen/google/rpc/error_details';
import { Status } from '../../gen/google/rpc/status';

export interface DecodedError {
  code: status;
  message: string;
  reason: string | undefined;
  domain: string | undefined;
  metadata: Record<string, string>;
  /** field -> description, from google.rpc.BadRequest. */
  fields: Record<string, string>;
}

/** Reads google.rpc.Status from grpc-status-details-bin. */
export function decodeError(err: ServiceError): DecodedError {
  const raw = err.metadata?.get('grpc-status-details-bin')[0];
  const decoded: DecodedError = { code: err.code, message: err.details, reason: undefined, domain: undefined, metadata: {}, fields: {} };
  if (!(raw instanceof Buffer)) return decoded;
  const st = Status.decode(raw);
  expect(st.code, 'Status.code matches the gRPC code').to.equal(err.code);
  for (const any of st.details) {
    if (any.typeUrl === 'type.googleapis.com/google.rpc.ErrorInfo') {
      const info = ErrorInfo.decode(any.value);
      decoded.reason = info.reason;
      decoded.domain = info.domain;
      decoded.metadata = info.metadata;
    } else if (any.typeUrl === 'type.googleapis.com/google.rpc.BadRequest') {
      for (const v of BadRequest.decode(any.value).fieldViolations) decoded.fields[v.field] = v.description;
    }
  }
  return decoded;
}

/** Awaits a call that must fail with `code` (and `reason`, when given); answers the decoded error. */
export async function expectError(call: Promise<unknown>, code: status, reason?: string): Promise<DecodedError> {
  let caught: unknown;
  try {
    await call;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${status[code]} but the call succeeded`).to.not.equal(undefined);
  const decoded = decodeError(caught as ServiceError);
  expect(status[decoded.code], `status (message: ${decoded.message})`).to.equal(status[code]);
  if (reason !== undefined) {
    expect(decoded.reason).to.equal(reason);
    expect(decoded.domain).to.equal('credits.v1');
  }
  return decoded;
}

/** Outcome counts of settled calls: 'OK' or the error reason. */
export function tally(results: PromiseSettledResult<unknown>[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const result of results) {
    const key = result.status === 'fulfilled' ? 'OK' : `${decodeError(result.reason as ServiceError).reason}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
