import { randomUUID } from 'node:crypto';
import { Client, credentials, Metadata, status, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import type { ReadCallOptions, ServiceClient, WriteCallOptions } from './client-types';
import { clientClosed, CreditsError, isServiceError, toCreditsError } from './credits-error';
import { addTraceContext } from './trace-context';
import { eventsClient, type EventsClient } from './events-client';
import { backoffMs, retryPolicyOf, sleep, type RetryOptions, type RetryPolicy } from './retry-policy';
import { isReadMethod, requestCodecOf, SERVICE_DEFINITIONS, type Services, type UnaryMethodDefinition } from './services';

/** PEM material for TLS; strings or Buffers of the files' contents (not paths). */
export interface TlsOptions {
  /** CA certificate(s) that signed the server's certificate; default: the system roots. */
  ca?: string | Buffer;
  /** Client certificate chain for mutual TLS (with `key`). */
  cert?: string | Buffer;
  /** Private key of `cert`. */
  key?: string | Buffer;
  /** Name to check the server's certificate against, when it is not the address's host. */
  serverName?: string;
}

export interface CreditsClientOptions {
  /** `host:port` of the credits service (any grpc-js target, e.g. `dns:///credits.internal:50051`). */
  address: string;
  /** The API key, sent as `authorization: Bearer <apiKey>` on every call. */
  apiKey: string;
  /** Absent: plaintext. `true`: TLS trusting the system roots. An object: a private CA and/or a client certificate (mutual TLS). */
  tls?: true | TlsOptions;
  /** Deadline of each call that gives none, in milliseconds, retries included (default 10000). */
  defaultDeadlineMs?: number;
  /** Retries of UNAVAILABLE (all calls) and ABORTED (mutating calls); `false` turns them off. */
  retry?: RetryOptions | false;
  /**
   * While calls or event streams are open, the connection is pinged this
   * often (milliseconds, default 20000) and given up after half as long
   * again without an answer: a path that went silent (a dead host, a
   * dropped NAT or load-balancer entry) then ends with UNAVAILABLE, which
   * calls retry and streams resume from, instead of waiting forever.
   */
  keepaliveMs?: number;
  /** Extra grpc-js channel options (message sizes, ...); they win over the options above. */
  channelOptions?: ChannelOptions;
}

/** The client: one property per service, all sharing one channel. */
export type CreditsClient = { readonly [S in keyof Services]: ServiceClient<Services[S]> } & {
  /** EventService: ListEvents, and `stream`, an iterator that follows the events and resumes by itself. */
  readonly events: EventsClient;
  /**
   * Closes the channel: open event streams and every later call end with a
   * CreditsError CANCELLED ("The client was closed"); unary calls already
   * sent finish.
   */
  close(): void;
};

export const DEFAULT_DEADLINE_MS = 10_000;
export const DEFAULT_KEEPALIVE_MS = 20_000;

const RETRYABLE_READ: ReadonlySet<status> = new Set([status.UNAVAILABLE]);
const RETRYABLE_MUTATING: ReadonlySet<status> = new Set([status.UNAVAILABLE, status.ABORTED]);
// No space at either end: HTTP/2 drops such a header value (RFC 9113 8.2.1)
// and the call, its retries included, would run without a key.
const IDEMPOTENCY_KEY = /^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$/;
// What the service takes as the call's request id (any other value it replaces with one of its own).
const REQUEST_ID = /^[\x21-\x7e]{1,100}$/;

interface Settings {
  apiKey: string;
  defaultDeadlineMs: number;
  retry: RetryPolicy;
  /** Aborted by close(): calls and streams then end with CANCELLED. */
  closed: AbortSignal;
}

/**
 * Connects to the credits service. Every method returns a promise, takes a
 * partial request (unset fields get their proto defaults) and throws
 * `CreditsError`. Mutating calls carry an `idempotency-key` (a random UUID
 * unless given) that their automatic retries reuse; every call carries an
 * `x-request-id` (likewise) that its retries reuse.
 */
export function createCreditsClient(options: CreditsClientOptions): CreditsClient {
  if (typeof options.address !== 'string' || options.address === '') throw new TypeError('address is required (host:port)');
  if (typeof options.apiKey !== 'string' || !/^[\x21-\x7e]+$/.test(options.apiKey)) throw new TypeError('apiKey is required (printable ASCII, no spaces)');
  const closing = new AbortController();
  const settings: Settings = {
    apiKey: options.apiKey,
    defaultDeadlineMs: checkedDeadline(options.defaultDeadlineMs ?? DEFAULT_DEADLINE_MS, 'defaultDeadlineMs'),
    retry: retryPolicyOf(options.retry),
    closed: closing.signal,
  };
  const keepaliveMs = checkedDeadline(options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS, 'keepaliveMs');
  const channel = new Client(options.address, channelCredentials(options.tls), {
    // grpc-js sends no pings by default: a stream over a connection that went
    // silent without a FIN or RST waited for ever, never resuming.
    'grpc.keepalive_time_ms': keepaliveMs,
    'grpc.keepalive_timeout_ms': Math.max(Math.ceil(keepaliveMs / 2), 100),
    // Reconnect about as fast as the retries come, so a retry after a restart finds the server.
    'grpc.initial_reconnect_backoff_ms': Math.max(settings.retry.initialBackoffMs, 50),
    'grpc.max_reconnect_backoff_ms': Math.max(settings.retry.maxBackoffMs, 1000),
    'grpc.primary_user_agent': 'credits-client-ts',
    ...(options.tls !== undefined && options.tls !== true && options.tls.serverName ? { 'grpc.ssl_target_name_override': options.tls.serverName } : {}),
    ...options.channelOptions,
  });

  const client: Record<string, unknown> = {
    close: () => {
      closing.abort();
      channel.close();
    },
  };
  for (const [serviceName, definition] of Object.entries(SERVICE_DEFINITIONS)) {
    client[serviceName] = serviceClient(channel, definition as unknown as Record<string, UnaryMethodDefinition>, settings);
  }
  client.events = eventsClient(channel, settings, (method, makeRequest, options) => invoke(channel, method, makeRequest, false, options, settings));
  return client as CreditsClient;
}

function serviceClient(channel: Client, definition: Record<string, UnaryMethodDefinition>, settings: Settings): Record<string, unknown> {
  const methods: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    const codec = requestCodecOf(name);
    const mutating = !isReadMethod(name);
    const call = (request: unknown, options?: WriteCallOptions) =>
      invoke(channel, method, () => codec.fromPartial(withoutReservedKeys(request ?? {}, method.path)), mutating, options ?? {}, settings);
    methods[name] = call;
    if (name.startsWith('list')) methods[`${name}All`] = (filter?: object, options?: ReadCallOptions) => walkPages(call, filter ?? {}, options);
  }
  return methods;
}

async function invoke(
  channel: Client,
  method: UnaryMethodDefinition,
  makeRequest: () => unknown,
  mutating: boolean,
  options: WriteCallOptions,
  settings: Settings,
): Promise<unknown> {
  // Built and encoded here, inside the async function, so that a bad request
  // rejects the promise instead of throwing, and one that protobuf cannot
  // encode (an amount beyond int64) is the caller's TypeError, not the
  // INTERNAL that grpc-js makes of a serialization failure. Retries reuse the bytes.
  const request = encodeRequest(method, makeRequest());
  const deadline = Date.now() + checkedDeadline(options.deadlineMs ?? settings.defaultDeadlineMs, 'deadlineMs');
  let idempotencyKey: string | undefined;
  if (mutating) {
    idempotencyKey = options.idempotencyKey ?? randomUUID();
    if (!IDEMPOTENCY_KEY.test(idempotencyKey)) throw new TypeError('idempotencyKey must be 1..255 printable ASCII characters, with no space at either end');
  }
  const requestId = options.requestId ?? randomUUID();
  if (!REQUEST_ID.test(requestId)) throw new TypeError('requestId must be 1..100 printable ASCII characters, with no space');
  const retryable = mutating ? RETRYABLE_MUTATING : RETRYABLE_READ;
  const { signal } = options;
  const cancelled = (attempts: number) =>
    new CreditsError({ code: status.CANCELLED, message: 'The call was cancelled by its AbortSignal.', method: method.path, attempts, requestId, cause: signal?.reason });

  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw cancelled(attempt - 1);
    if (settings.closed.aborted) throw clientClosed(method.path, attempt - 1, requestId);
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${settings.apiKey}`);
    metadata.set('x-request-id', requestId);
    if (idempotencyKey !== undefined) metadata.set('idempotency-key', idempotencyKey);
    addTraceContext(metadata);
    let error: CreditsError;
    try {
      return await unaryCall(channel, method, request, metadata, new Date(deadline), signal);
    } catch (err) {
      if (signal?.aborted) throw cancelled(attempt);
      if (settings.closed.aborted) throw clientClosed(method.path, attempt, requestId);
      if (!isServiceError(err)) throw err;
      error = toCreditsError(err, { method: method.path, attempts: attempt, requestId });
    }
    if (!retryable.has(error.code) || attempt >= settings.retry.maxAttempts) throw error;
    const wait = backoffMs(settings.retry, attempt);
    // A retry that cannot finish before the deadline only hides the real error.
    if (Date.now() + wait >= deadline) throw error;
    await sleep(wait, signal, () => cancelled(attempt));
  }
}

/**
 * The request, refused with a TypeError when an object in it has an own key
 * `__proto__` (one made by JSON.parse): the generated codec would drop that
 * pair without a word (the service refuses the key from other languages).
 */
function withoutReservedKeys(request: unknown, path: string): unknown {
  const visit = (value: unknown, at: string): void => {
    if (typeof value !== 'object' || value === null || value instanceof Date || ArrayBuffer.isView(value)) return;
    if (Object.prototype.hasOwnProperty.call(value, '__proto__')) {
      throw new TypeError(`The request of ${path} has the key "__proto__" at ${at || 'its top level'}: it cannot be sent (the service refuses it)`);
    }
    for (const [key, inner] of Object.entries(value)) visit(inner, at === '' ? key : `${at}.${key}`);
  };
  visit(request, '');
  return request;
}

function encodeRequest(method: UnaryMethodDefinition, request: unknown): Buffer {
  try {
    return method.requestSerialize(request);
  } catch (err) {
    throw new TypeError(`The request of ${method.path} cannot be encoded: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

const encoded = (bytes: Buffer) => bytes;

function unaryCall(channel: Client, method: UnaryMethodDefinition, request: Buffer, metadata: Metadata, deadline: Date, signal: AbortSignal | undefined): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const abort = () => call.cancel();
    const call = channel.makeUnaryRequest(method.path, encoded, method.responseDeserialize, request, metadata, { deadline }, (err, response) => {
      signal?.removeEventListener('abort', abort);
      if (err) reject(err);
      else resolve(response);
    });
    signal?.addEventListener('abort', abort, { once: true });
  });
}

/** Yields every item of every page of a List RPC, fetching the next page only when the previous one is consumed. */
async function* walkPages(call: (request: unknown, options?: ReadCallOptions) => Promise<unknown>, filter: object, options: ReadCallOptions | undefined) {
  let pageToken = '';
  do {
    const page = (await call({ ...filter, pageToken }, options)) as Record<string, unknown> & { nextPageToken?: string };
    // The page is the response's one repeated field (`promotional_credits`, `coupons`, ...).
    const items = Object.values(page).find(Array.isArray) ?? [];
    yield* items as unknown[];
    pageToken = page.nextPageToken ?? '';
  } while (pageToken !== '');
}

function channelCredentials(tls: CreditsClientOptions['tls']): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  if (tls === true) return credentials.createSsl();
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new TypeError('tls.cert and tls.key must be given together');
  const pem = (name: 'ca' | 'key' | 'cert') => {
    const value = tls[name];
    if (value === undefined) return null;
    const bytes = Buffer.from(value);
    // A path given for the text connected and then failed every attempt as an untrusted certificate.
    if (!bytes.includes('-----BEGIN')) {
      throw new TypeError(`tls.${name} must be PEM text (-----BEGIN …), not a file path: pass fs.readFileSync(path)`);
    }
    return bytes;
  };
  return credentials.createSsl(pem('ca'), pem('key'), pem('cert'));
}

function checkedDeadline(ms: number, name: string): number {
  if (!Number.isFinite(ms) || ms <= 0) throw new TypeError(`${name} must be a positive number of milliseconds`);
  return ms;
}
