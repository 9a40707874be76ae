import type { ReadMethodName, RequestOf, ResponseOf } from './services';

type Builtin = Date | Function | Uint8Array | string | number | boolean | bigint | undefined;

/**
 * A request where every field may be left out (the generated `fromPartial`
 * fills in the proto defaults). Unlike ts-proto's own DeepPartial, int64
 * fields stay `bigint`: money is never a `number` or a string here.
 */
export type DeepPartial<T> = T extends Builtin
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends ReadonlyArray<infer U>
      ? ReadonlyArray<DeepPartial<U>>
      : T extends {}
        ? { [K in keyof T]?: DeepPartial<T[K]> }
        : Partial<T>;

/** Options of one read call (Get, List, Validate). */
export interface ReadCallOptions {
  /** Deadline of this call in milliseconds, retries included (default: the client's `defaultDeadlineMs`). */
  deadlineMs?: number;
  /** Aborting it cancels the call (and any retry); the call then throws a CreditsError CANCELLED. */
  signal?: AbortSignal;
  /**
   * Sent as `x-request-id` metadata on every attempt (1..100 printable ASCII,
   * no space). Default: a random UUID per call. The service logs it with the
   * call (`request_id`) and answers it in its trailers; a failed call's
   * CreditsError carries it as `requestId`, so one id finds the call in the
   * service's logs, its retries included.
   */
  requestId?: string;
}

/** Options of one mutating call (Add, Deduct, Set, Create, Update, Delete, Redeem, Revoke, ...). */
export interface WriteCallOptions extends ReadCallOptions {
  /**
   * Sent as `idempotency-key` metadata (1..255 printable ASCII). Default: a
   * random UUID per call. The same key is reused by the client's own retries;
   * pass your own (e.g. derived from your invoice id) to make your retries
   * across processes safe too.
   */
  idempotencyKey?: string;
}

/** The element type of a List response's page (its one repeated field). */
export type PageItemOf<Res> = { [F in keyof Res]-?: NonNullable<Res[F]> extends ReadonlyArray<infer Item> ? Item : never }[keyof Res];

/** A List request's filters and page size; the page token is the iterator's business. */
export type ListAllRequest<Req> = Omit<DeepPartial<Req>, 'pageToken'>;

/** One service of the client: its RPCs as promise-returning methods, plus an `<listMethod>All` iterator per List RPC. */
export type ServiceClient<D> = {
  [K in keyof D]: (
    request: DeepPartial<RequestOf<D[K]>>,
    options?: K extends ReadMethodName ? ReadCallOptions : WriteCallOptions,
  ) => Promise<ResponseOf<D[K]>>;
} & {
  [K in keyof D as K extends `list${string}` ? `${K & string}All` : never]: (
    request?: ListAllRequest<RequestOf<D[K]>>,
    options?: ReadCallOptions,
  ) => AsyncIterableIterator<PageItemOf<ResponseOf<D[K]>>>;
};
