/**
 * The reverse of a domain → proto enum table, as a function: the zero value
 * (X_UNSPECIFIED, i.e. unset) reads as undefined, and a number the table does
 * not hold (a newer client's value, ts-proto's UNRECOGNIZED) as
 * 'UNRECOGNIZED', which validation then refuses. One table per enum serves
 * both directions, so the two cannot disagree.
 */
export function enumFromProto<D extends string, P extends number>(toProto: Readonly<Record<D, P>>): (value: P) => D | 'UNRECOGNIZED' | undefined {
  const byNumber = new Map<number, D>((Object.entries(toProto) as Array<[D, P]>).map(([domain, proto]) => [proto, domain]));
  return (value) => (value === 0 ? undefined : (byNumber.get(value) ?? 'UNRECOGNIZED'));
}
