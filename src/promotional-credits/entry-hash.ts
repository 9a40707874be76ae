import { createHash } from 'node:crypto';

/** The fields of a ledger entry its hash covers, as stored. */
export interface HashedEntry {
  id: string;
  tenantId: string;
  customerId: string;
  currencyCode: string;
  type: string;
  /** '' when the entry was written before origins were recorded. */
  origin: string;
  amount: bigint;
  closingBalance: bigint;
  description: string;
  creditType: string;
  reference: string;
  doneBy: string;
  /** Whole microseconds since the Unix epoch. */
  createTimeMicros: bigint;
  expireTimeMicros: bigint | undefined;
  reversesId: string | undefined;
  allocations: ReadonlyArray<{ lotId: string; amount: bigint }>;
  metadata: Readonly<Record<string, string>>;
}

/** netstring: `<length in UTF-8 bytes>:<text>,`. */
function netstring(text: string): string {
  return `${Buffer.byteLength(text, 'utf8')}:${text},`;
}

/**
 * The entry's hash, chained to the previous entry of its balance: the
 * reference implementation of the encoding documented on
 * PromotionalCredit.hash (the database computes the same in
 * promotional_credit_entry_hash, migration 1764300000000). `credits verify`
 * recomputes every chain with it, independently of the SQL.
 */
export function entryHash(previousHash: string, e: HashedEntry): string {
  const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  const fields = [
    previousHash,
    e.id,
    e.tenantId,
    e.customerId,
    e.currencyCode,
    e.type,
    e.origin,
    e.amount.toString(),
    e.closingBalance.toString(),
    e.description,
    e.creditType,
    e.reference,
    e.doneBy,
    e.createTimeMicros.toString(),
    e.expireTimeMicros?.toString() ?? '',
    e.reversesId ?? '',
    e.allocations.map((a) => netstring(a.lotId) + netstring(a.amount.toString())).join(''),
    Object.keys(e.metadata)
      .sort(byteOrder)
      .map((key) => netstring(key) + netstring(e.metadata[key]!))
      .join(''),
  ];
  return createHash('sha256').update(fields.map(netstring).join(''), 'utf8').digest('hex');
}
