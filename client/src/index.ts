/**
 * @credits/client: the TypeScript client of the credits gRPC service
 * (`credits.v1`). Start with `createCreditsClient`.
 */
export { createCreditsClient, DEFAULT_DEADLINE_MS, type CreditsClient, type CreditsClientOptions, type TlsOptions } from './create-credits-client';
export type { DeepPartial, ListAllRequest, PageItemOf, ReadCallOptions, ServiceClient, WriteCallOptions } from './client-types';
export { CreditsError, type FieldViolation, type StatusName } from './credits-error';
export type { EventsClient, EventStreamOptions, EventStreamRequest } from './events-client';
export { DEFAULT_RETRY, type RetryOptions } from './retry-policy';
export { status } from '@grpc/grpc-js';
// Every generated message type, enum and codec of credits.v1 (PromotionalCredit, CreditType, Money, ...).
export * from '../../gen/index.credits.v1';
