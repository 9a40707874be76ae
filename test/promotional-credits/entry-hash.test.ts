import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { entryHash, type HashedEntry } from '../../src/promotional-credits/entry-hash';
import { openTestDataSource } from '../support/database';

/** An entry's fields as promotional_credit_entry_hash takes them (NULL where the reference implementation has ''). */
interface SqlEntry {
  previousHash: string | null;
  id: string | null;
  tenantId: string | null;
  customerId: string | null;
  currencyCode: string | null;
  type: string | null;
  origin: string | null;
  amount: bigint | null;
  closingBalance: bigint | null;
  description: string | null;
  creditType: string | null;
  reference: string | null;
  doneBy: string | null;
  createTime: Date | null;
  expireTime: Date | null;
  reversesId: string | null;
  allocations: Array<{ lot_id: string; amount: string }> | null;
  metadata: Record<string, string> | null;
}

const HASH_SQL = `SELECT promotional_credit_entry_hash($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb, $18::jsonb) AS hash`;

const plain: SqlEntry = {
  previousHash: 'ab'.repeat(32),
  id: randomUUID(),
  tenantId: randomUUID(),
  customerId: 'c-1',
  currencyCode: 'USD',
  type: 'INCREMENT',
  origin: 'ADD',
  amount: 100n,
  closingBalance: 250n,
  description: 'welcome',
  creditType: 'GENERAL',
  reference: '',
  doneBy: 'billing',
  createTime: new Date('2026-12-05T10:00:00.123Z'),
  expireTime: null,
  reversesId: null,
  allocations: null,
  metadata: {},
};

const micros = (at: Date | null) => (at === null ? undefined : BigInt(at.getTime()) * 1000n);

const reference = (previousHash: string, e: SqlEntry): string =>
  entryHash(previousHash, {
    id: e.id ?? '',
    tenantId: e.tenantId ?? '',
    customerId: e.customerId ?? '',
    currencyCode: e.currencyCode ?? '',
    type: e.type ?? '',
    origin: e.origin ?? '',
    amount: e.amount ?? 0n,
    closingBalance: e.closingBalance ?? 0n,
    description: e.description ?? '',
    creditType: e.creditType ?? '',
    reference: e.reference ?? '',
    doneBy: e.doneBy ?? '',
    createTimeMicros: micros(e.createTime) ?? 0n,
    expireTimeMicros: micros(e.expireTime),
    reversesId: e.reversesId ?? undefined,
    allocations: (e.allocations ?? []).map((a) => ({ lotId: a.lot_id, amount: BigInt(a.amount) })),
    metadata: e.metadata ?? {},
  } satisfies HashedEntry);

describe('promotional_credit_entry_hash, the hash the database chains entries with', () => {
  let dataSource: DataSource;
  before(async () => {
    dataSource = await openTestDataSource(1);
  });
  after(async () => {
    await dataSource.destroy();
  });

  const sqlHash = async (e: SqlEntry): Promise<string> => {
    const [row] = (await dataSource.query(HASH_SQL, [
      e.previousHash,
      e.id,
      e.tenantId,
      e.customerId,
      e.currencyCode,
      e.type,
      e.origin,
      e.amount?.toString() ?? null,
      e.closingBalance?.toString() ?? null,
      e.description,
      e.creditType,
      e.reference,
      e.doneBy,
      e.createTime,
      e.expireTime,
      e.reversesId,
      e.allocations === null ? null : JSON.stringify(e.allocations),
      e.metadata === null ? null : JSON.stringify(e.metadata),
    ])) as Array<{ hash: string }>;
    return row!.hash;
  };

  it('answers what the reference implementation does, field by field and at the edges', async () => {
    const cases: Array<[string, SqlEntry]> = [
      ['a plain Add', plain],
      ['the first entry of a balance (no previous hash)', { ...plain, previousHash: '' }],
      ['no previous hash, as NULL', { ...plain, previousHash: null }],
      ['a Deduct from two lots', { ...plain, type: 'DECREMENT', origin: 'DEDUCT', amount: 30n, closingBalance: 0n, allocations: [{ lot_id: randomUUID(), amount: '20' }, { lot_id: randomUUID(), amount: '10' }] }],
      ['no allocations, as an empty array', { ...plain, allocations: [] }],
      ['a reversal', { ...plain, type: 'DECREMENT', origin: 'REVERSAL', reversesId: randomUUID() }],
      ['an expiring lot, at the last instant a Timestamp can say', { ...plain, expireTime: new Date('9999-12-31T23:59:59.999Z') }],
      ['written at the first instant a Timestamp can say', { ...plain, createTime: new Date('0001-01-01T00:00:00.000Z') }],
      ['before the epoch', { ...plain, createTime: new Date('1969-12-31T23:59:59.999Z'), expireTime: new Date('1900-01-01T00:00:00.001Z') }],
      ['the extreme amounts', { ...plain, amount: -9223372036854775808n, closingBalance: 9223372036854775807n }],
      ['non-ASCII text, quotes, backslashes and a newline', { ...plain, customerId: 'kü€𝄞', description: 'a "b" \\c\nd', reference: 'ré', doneBy: 'ß' }],
      ['absent text, as NULL', { ...plain, description: null, reference: null, origin: null }],
      ['metadata, keys in byte order and an empty value', { ...plain, metadata: { z: '1', Z: '2', é: 'ü', '€': '', '𝄞': 'x', a: 'y' } }],
      ['no metadata, as NULL', { ...plain, metadata: null }],
    ];
    for (const [name, e] of cases) expect(await sqlHash(e), name).to.equal(reference(e.previousHash ?? '', e));
    // Each field counts: a hash that ignored one would still answer these equal.
    const hashes = new Set<string>();
    for (const [, e] of cases) hashes.add(await sqlHash(e));
    expect(hashes.size, 'as many hashes as entries that differ').to.equal(cases.length - 3);
  });

  it('is inlined into a statement that hands it columns: planned once with it, not run as a function of its own', async () => {
    const plan = ((await dataSource.query(
      `EXPLAIN (VERBOSE, COSTS OFF)
       SELECT promotional_credit_entry_hash(e.hash, e.id, e.tenant_id, e.customer_id, e.currency_code, e.type, e.origin, e.amount, e.closing_balance,
                e.description, e.credit_type, e.reference, e.done_by, e.create_time, e.expire_time, e.reverses_id, e.allocations, e.metadata)
         FROM promotional_credits AS e`,
    )) as Array<{ 'QUERY PLAN': string }>)
      .map((r) => r['QUERY PLAN'])
      .join('\n');
    expect(plan).to.include('sha256(');
    expect(plan).to.not.include('promotional_credit_entry_hash(');
  });
});
