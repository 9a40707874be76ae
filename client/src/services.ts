import * as v1 from '../../gen/index.credits.v1';

/**
 * The services of the client: the property that holds each on the client
 * (`client.promotionalCredits`) and its proto service name. Adding a service is
 * one line here. Its generated definition is `<name>Service` in gen/ and each
 * method's request codec (`fromPartial`) the generated `<Rpc>Request`; both are
 * checked at compile time below.
 */
export const SERVICES = {
  promotionalCredits: 'PromotionalCreditService',
  coupons: 'CouponService',
  customerCredits: 'CreditService',
} as const;

type Generated = typeof v1;

/**
 * The generated grpc-js definitions of the services, by client property. Typed
 * by reference to gen/ (not inlined) so the RPCs' proto comments reach the
 * client's methods in the editor.
 */
export type Services = { [S in keyof typeof SERVICES]: Generated[`${(typeof SERVICES)[S]}Service`] };

export const SERVICE_DEFINITIONS: Services = Object.fromEntries(
  Object.entries(SERVICES).map(([property, name]) => [property, (v1 as Record<string, unknown>)[`${name}Service`]]),
) as Services;

/** Methods whose names start like this only read; every other method is mutating (gets an idempotency key). */
export const READ_METHOD_PREFIXES = ['get', 'list', 'validate'] as const;
export type ReadMethodName = `${(typeof READ_METHOD_PREFIXES)[number]}${string}`;

export function isReadMethod(name: string): boolean {
  return READ_METHOD_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/** A generated grpc-js unary method definition (ts-proto `outputServices=grpc-js`). */
export interface UnaryMethodDefinition<Req = any, Res = any> {
  path: string;
  requestStream: false;
  responseStream: false;
  requestSerialize(value: Req): Buffer;
  responseDeserialize(value: Buffer): Res;
}

export type RequestOf<M> = M extends { requestSerialize(value: infer Req): Buffer } ? Req : never;
export type ResponseOf<M> = M extends { responseDeserialize(value: Buffer): infer Res } ? Res : never;

/** The generated message codec of a request: `fromPartial` fills the defaults of every unset field. */
export interface RequestCodec<Req = unknown> {
  fromPartial(object: unknown): Req;
}

type RequestCodecName<K> = `${Capitalize<K & string>}Request`;

/** Method names of any service whose `<Rpc>Request` codec is missing from the generated namespace. */
type MissingRequestCodecs = {
  [S in keyof Services]: { [K in keyof Services[S]]: RequestCodecName<K> extends keyof Generated ? never : K }[keyof Services[S]];
}[keyof Services];
// Fails to compile (naming the method) when a service's request codec cannot be found by name.
const everyRequestCodecExists: [MissingRequestCodecs] extends [never] ? true : MissingRequestCodecs = true;
void everyRequestCodecExists;

/** The generated `fromPartial` of a method's request, found by the method's name. */
export function requestCodecOf(methodName: string): RequestCodec {
  const name = `${methodName.charAt(0).toUpperCase()}${methodName.slice(1)}Request`;
  const codec = (v1 as Record<string, unknown>)[name] as Partial<RequestCodec> | undefined;
  if (typeof codec?.fromPartial !== 'function') throw new Error(`credits client: no generated ${name} for method ${methodName}`);
  return codec as RequestCodec;
}
