import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { ledgerProblemsOf } from '../support/ledger';
import { status } from '@grpc/grpc-js';
import {
  CreditType,
  PromotionalCreditType,
  type ListPromotionalCreditsRequest,
  type PromotionalCredit,
  type PromotionalCreditTypeFilter,
} from '../../gen/credits/v1/promotional_credit_service';
import { promotionalCredits, sharedServer, type TestServer } from '../support/server';
import { expectError } from '../support/status';
import { walkPages } from '../support/pages';
import { newTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';
import { READ_ENTRIES } from '../../src/promotional-credits/recent-entries';

const base = { currencyCode: '', description: 'goodwill', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };
const { PROMOTIONAL_CREDIT_TYPE_INCREMENT: INCREMENT, PROMOTIONAL_CREDIT_TYPE_DECREMENT: DECREMENT } = PromotionalCreditType;
type Client = ReturnType<typeof promotionalCredits>;

function typeFilter(filter: Partial<PromotionalCreditTypeFilter>): PromotionalCreditTypeFilter {
  return { in: [], notIn: [], ...filter };
}

/** Every page of a listing, walked with `pageSize`; checks that each page but the last is full. */
function walk(client: Client, request: Partial<ListPromotionalCreditsRequest>, pageSize = 100): Promise<PromotionalCredit[]> {
  return walkPages(
    (pageToken) => client.listPromotionalCredits({ ...request, pageSize, pageToken }),
    (page) => {
      if (page.nextPageToken !== '') expect(page.promotionalCredits).to.have.length(Math.min(pageSize, 100));
      return page.promotionalCredits;
    },
  );
}

describe('ListPromotionalCredits', () => {
  let server: TestServer;

  before(async () => {
    server = await sharedServer();
  });

  describe('filters', () => {
    const t = useTenantClients({ per: 'suite' });
    /** Every entry of the tenant, newest first. */
    let entries: PromotionalCredit[];
    const ids = (list: PromotionalCredit[]) => list.map((e) => e.id);
    const list = async (request: Partial<ListPromotionalCreditsRequest>) => ids(await walk(t.promotionalCredits, request));
    const expected = (keep: (e: PromotionalCredit) => boolean) => ids(entries.filter(keep));

    before(async () => {
      // Customer ids chosen so a LIKE without escaping would match too much: a_1 and ab1 for the prefix "a_".
      for (const customerId of ['a_1', 'ab1', 'a_2', 'b', 'a%b'.replace('%', '.')]) {
        await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 100n });
        await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId, amount: 30n });
        await t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 5n, currencyCode: 'JPY' });
      }
      entries = await walk(t.promotionalCredits, {});
      expect(entries).to.have.length(15);
    });

    it('answers newest first with no filter', async () => {
      const seqOrder = entries.map((e) => e.createTime!.getTime());
      expect(seqOrder).to.deep.equal([...seqOrder].sort((a, b) => b - a));
      expect(entries[entries.length - 1]!.customerId).to.equal('a_1');
    });

    it('id: is, is_not, starts_with (any letter case)', async () => {
      const target = entries[4]!;
      expect(await list({ id: { is: target.id } })).to.deep.equal([target.id]);
      expect(await list({ id: { is: target.id.toUpperCase() } })).to.deep.equal([target.id]);
      expect(await list({ id: { isNot: target.id } })).to.deep.equal(expected((e) => e.id !== target.id));
      // Ids are time-ordered, so entries written together share their first
      // digits (a 1- or 9-character prefix matches them all): a prefix that
      // some but not all entries share, two at least, shows the filter
      // filters, and with is_not still leaves one.
      const lengths = Array.from({ length: target.id.length }, (_, i) => i + 1);
      const shared = entries
        .flatMap((e) => lengths.map((n) => e.id.slice(0, n)))
        .find((prefix) => expected((e) => e.id.startsWith(prefix)).length >= 2 && expected((e) => e.id.startsWith(prefix)).length < entries.length);
      expect(shared, 'a prefix some entries share').to.be.a('string');
      const member = entries.find((e) => e.id.startsWith(shared!))!;
      for (const prefix of [target.id.slice(0, 1), shared!, shared!.toUpperCase()]) {
        expect(await list({ id: { startsWith: prefix } }), prefix).to.deep.equal(expected((e) => e.id.startsWith(prefix.toLowerCase())));
      }
      expect(await list({ id: { startsWith: shared!, isNot: member.id } })).to.deep.equal(expected((e) => e.id.startsWith(shared!) && e.id !== member.id));
      expect(expected((e) => e.id.startsWith(shared!) && e.id !== member.id)).to.not.be.empty;
    });

    it('customer_id: is, is_not, starts_with, with _ taken literally', async () => {
      expect(await list({ customerId: { is: 'a_1' } })).to.deep.equal(expected((e) => e.customerId === 'a_1'));
      expect(await list({ customerId: { is: 'A_1' } })).to.deep.equal([]);
      expect(await list({ customerId: { isNot: 'b' } })).to.deep.equal(expected((e) => e.customerId !== 'b'));
      expect(await list({ customerId: { startsWith: 'a_' } })).to.deep.equal(expected((e) => e.customerId.startsWith('a_')));
      expect(await list({ customerId: { startsWith: 'a_' } })).to.have.length(6);
      expect(await list({ customerId: { startsWith: 'a' } })).to.deep.equal(expected((e) => e.customerId.startsWith('a')));
      expect(await list({ customerId: { startsWith: 'a.' } })).to.deep.equal(expected((e) => e.customerId === 'a.b'));
      expect(await list({ customerId: { startsWith: 'a', isNot: 'a_2' } })).to.deep.equal(
        expected((e) => e.customerId.startsWith('a') && e.customerId !== 'a_2'),
      );
      expect(await list({ customerId: { is: 'nobody' } })).to.deep.equal([]);
    });

    it('type: is, is_not, in, not_in', async () => {
      const inc = expected((e) => e.type === INCREMENT);
      const dec = expected((e) => e.type === DECREMENT);
      expect(inc).to.have.length(10);
      expect(await list({ type: typeFilter({ is: INCREMENT }) })).to.deep.equal(inc);
      expect(await list({ type: typeFilter({ is: DECREMENT }) })).to.deep.equal(dec);
      expect(await list({ type: typeFilter({ isNot: INCREMENT }) })).to.deep.equal(dec);
      expect(await list({ type: typeFilter({ in: [DECREMENT] }) })).to.deep.equal(dec);
      expect(await list({ type: typeFilter({ in: [INCREMENT, DECREMENT] }) })).to.deep.equal(ids(entries));
      expect(await list({ type: typeFilter({ notIn: [DECREMENT] }) })).to.deep.equal(inc);
      expect(await list({ type: typeFilter({ in: [INCREMENT, DECREMENT], isNot: DECREMENT }) })).to.deep.equal(inc);
      expect(await list({ type: typeFilter({}) })).to.deep.equal(ids(entries));
      // Operators that no type satisfies are a valid filter that matches nothing.
      expect(await list({ type: typeFilter({ notIn: [INCREMENT, DECREMENT] }) })).to.deep.equal([]);
      expect(await list({ type: typeFilter({ is: INCREMENT, isNot: INCREMENT }) })).to.deep.equal([]);
    });

    it('create_time: after, before, on, between', async () => {
      const times = entries.map((e) => e.createTime!.getTime());
      const oldest = Math.min(...times);
      const newest = Math.max(...times);
      const pivot = entries[7]!.createTime!;
      const after = expected((e) => e.createTime! > pivot);
      const before = expected((e) => e.createTime! < pivot);
      expect(after.length > 0 && before.length > 0, 'entries on both sides of the pivot').to.equal(true);
      expect(await list({ createTime: { after: pivot } })).to.deep.equal(after);
      expect(await list({ createTime: { before: pivot } })).to.deep.equal(before);
      expect(await list({ createTime: { after: new Date(newest) } })).to.deep.equal([]);
      expect(await list({ createTime: { before: new Date(oldest) } })).to.deep.equal([]);
      expect(await list({ createTime: { after: new Date(oldest - 1) } })).to.deep.equal(ids(entries));
      expect(await list({ createTime: { before: new Date(newest + 1) } })).to.deep.equal(ids(entries));

      const day = (t: Date) => Math.floor(t.getTime() / 86_400_000);
      expect(await list({ createTime: { on: pivot } })).to.deep.equal(expected((e) => day(e.createTime!) === day(pivot)));
      expect(await list({ createTime: { on: new Date(pivot.getTime() - 86_400_000) } })).to.deep.equal(
        expected((e) => day(e.createTime!) === day(pivot) - 1),
      );
      expect(await list({ createTime: { on: new Date('2001-02-03T04:05:06Z') } })).to.deep.equal([]);

      const start = entries[10]!.createTime!;
      const end = entries[3]!.createTime!;
      const between = expected((e) => e.createTime! >= start && e.createTime! < end);
      expect(between).to.include(entries[10]!.id).and.not.include(entries[3]!.id);
      expect(await list({ createTime: { between: { start, end } } })).to.deep.equal(between);
      // All operators together: their intersection.
      expect(await list({ createTime: { between: { start, end }, after: pivot, on: pivot, before: new Date(newest + 1) } })).to.deep.equal(
        expected((e) => e.createTime! >= start && e.createTime! < end && e.createTime! > pivot && day(e.createTime!) === day(pivot)),
      );
    });

    it('combines filters on different fields with AND', async () => {
      const pivot = entries[12]!.createTime!;
      expect(
        await list({ customerId: { startsWith: 'a' }, type: typeFilter({ is: INCREMENT }), createTime: { after: pivot } }),
      ).to.deep.equal(expected((e) => e.customerId.startsWith('a') && e.type === INCREMENT && e.createTime! > pivot));
      const target = entries.find((e) => e.customerId === 'b' && e.type === DECREMENT)!;
      expect(await list({ id: { is: target.id }, customerId: { is: 'b' }, type: typeFilter({ is: DECREMENT }) })).to.deep.equal([target.id]);
      expect(await list({ id: { is: target.id }, customerId: { is: 'a_1' } })).to.deep.equal([]);
      expect(await list({ id: { is: target.id }, type: typeFilter({ isNot: DECREMENT }) })).to.deep.equal([]);
    });

    it('answers calls made at once (read in one statement per filter shape) as it answers them one by one', async () => {
      const pivot = entries[7]!.createTime!;
      const requests: Array<Partial<ListPromotionalCreditsRequest>> = [
        {},
        { customerId: { is: 'a_1' } },
        { customerId: { is: 'b' } },
        { customerId: { is: 'nobody' } },
        { customerId: { startsWith: 'a_' }, type: typeFilter({ is: DECREMENT }) },
        { type: typeFilter({ in: [INCREMENT] }), createTime: { after: pivot } },
        { id: { is: entries[3]!.id } },
        { customerId: { isNot: 'b' }, createTime: { before: pivot } },
      ];
      const one = async (request: Partial<ListPromotionalCreditsRequest>, pageSize: number) => {
        const first = await t.promotionalCredits.listPromotionalCredits({ ...request, pageSize, pageToken: '' });
        const second = first.nextPageToken === '' ? undefined : await t.promotionalCredits.listPromotionalCredits({ ...request, pageSize, pageToken: first.nextPageToken });
        return [ids(first.promotionalCredits), ids(second?.promotionalCredits ?? [])];
      };
      const cases = requests.flatMap((request) => [1, 2, 4].map((pageSize) => [request, pageSize] as const));
      const sequential = [];
      for (const [request, pageSize] of cases) sequential.push(await one(request, pageSize));
      for (let round = 0; round < 3; round++) {
        expect(await Promise.all(cases.map(([request, pageSize]) => one(request, pageSize)))).to.deep.equal(sequential);
      }
    });

    it('walks filtered pages of every size without gaps or repeats', async () => {
      const all = expected((e) => e.customerId !== 'ab1');
      for (const pageSize of [1, 2, 3, 7, 10, 11]) {
        expect(ids(await walk(t.promotionalCredits, { customerId: { isNot: 'ab1' } }, pageSize)), `page size ${pageSize}`).to.deep.equal(all);
      }
    });
  });

  describe('pagination', () => {
    const t = useTenantClients();

    async function addMany(count: number, customerId = 'c'): Promise<void> {
      for (let i = 0; i < count; i += 20) {
        await Promise.all(
          Array.from({ length: Math.min(20, count - i) }, () => t.promotionalCredits.addPromotionalCredits({ ...base, customerId, amount: 1n })),
        );
      }
    }

    it('page_size 0 means 10 and sizes above 100 are capped at 100', async () => {
      await addMany(105);
      const first = await t.promotionalCredits.listPromotionalCredits({ pageSize: 0, pageToken: '' });
      expect(first.promotionalCredits).to.have.length(10);
      expect(first.nextPageToken).to.not.equal('');
      const capped = await t.promotionalCredits.listPromotionalCredits({ pageSize: 1000, pageToken: '' });
      expect(capped.promotionalCredits).to.have.length(100);
      const rest = await t.promotionalCredits.listPromotionalCredits({ pageSize: 1000, pageToken: capped.nextPageToken });
      expect(rest.promotionalCredits).to.have.length(5);
      expect(rest.nextPageToken).to.equal('');
      // Closing balances of one customer descend by one down the newest-first listing.
      const closings = [...capped.promotionalCredits, ...rest.promotionalCredits].map((e) => e.closingBalance);
      expect(closings).to.deep.equal(Array.from({ length: 105 }, (_, i) => BigInt(105 - i)));
    });

    it('walks pages newest first, each entry once, and the last page has no token', async () => {
      await addMany(10);
      const all = (await t.promotionalCredits.listPromotionalCredits({ pageSize: 100, pageToken: '' })).promotionalCredits;
      const pages: string[][] = [];
      let pageToken = '';
      do {
        const page = await t.promotionalCredits.listPromotionalCredits({ pageSize: 3, pageToken });
        pages.push(page.promotionalCredits.map((e) => e.id));
        pageToken = page.nextPageToken;
      } while (pageToken !== '');
      expect(pages.map((p) => p.length)).to.deep.equal([3, 3, 3, 1]);
      expect(pages.flat()).to.deep.equal(all.map((e) => e.id));
      // A full last page still ends the walk: exactly 10 with page size 5 is two pages.
      const second = await t.promotionalCredits.listPromotionalCredits({ pageSize: 5, pageToken: (await t.promotionalCredits.listPromotionalCredits({ pageSize: 5, pageToken: '' })).nextPageToken });
      expect(second.promotionalCredits).to.have.length(5);
      expect(second.nextPageToken).to.equal('');
    });

    it('answers an empty page for a tenant with no entries', async () => {
      expect(await t.promotionalCredits.listPromotionalCredits({ pageSize: 0, pageToken: '' })).to.deep.equal({ promotionalCredits: [], nextPageToken: '' });
    });

    it('refuses a tampered, foreign or malformed token with INVALID_ARGUMENT on page_token', async () => {
      await addMany(4);
      const { nextPageToken: token } = await t.promotionalCredits.listPromotionalCredits({ pageSize: 2, pageToken: '' });
      const [payload, mac] = token.split('.') as [string, string];
      const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
      const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), p: ['999999999'] })).toString('base64url');
      const bad = [
        flip(token, 0),
        flip(token, payload.length - 1),
        `${payload}.${flip(mac, 0)}`,
        `${payload}.${flip(mac, mac.length - 1)}`,
        `${payload}.${mac}x`,
        `${payload}.${mac}!`,
        `${forgedPayload}.${mac}`,
        payload,
        `${token}.${mac}`,
        'garbage',
        '.',
        'x'.repeat(2000),
      ];
      for (const pageToken of bad) {
        const err = await expectError(t.promotionalCredits.listPromotionalCredits({ pageSize: 2, pageToken }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
        expect(Object.keys(err.fields), pageToken).to.deep.equal(['page_token']);
      }
      // The genuine token still works.
      expect((await t.promotionalCredits.listPromotionalCredits({ pageSize: 2, pageToken: token })).promotionalCredits).to.have.length(2);
    });

    it('refuses a token sent with different filters', async () => {
      await addMany(4);
      const { nextPageToken: token } = await t.promotionalCredits.listPromotionalCredits({ pageSize: 2, pageToken: '', customerId: { is: 'c' } });
      for (const filters of [
        {},
        { customerId: { is: 'd' } },
        { customerId: { is: 'c' }, type: typeFilter({ is: INCREMENT }) },
        { customerId: { startsWith: 'c' } },
        { customerId: { is: 'c' }, createTime: { before: new Date() } },
      ]) {
        const err = await expectError(t.promotionalCredits.listPromotionalCredits({ pageSize: 2, pageToken: token, ...filters }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
        expect(err.fields.page_token).to.match(/different filters/);
      }
      // The page size may change between pages; the filters may not.
      expect((await t.promotionalCredits.listPromotionalCredits({ pageSize: 10, pageToken: token, customerId: { is: 'c' } })).promotionalCredits).to.have.length(2);
    });

    it("refuses another tenant's token", async () => {
      await addMany(3);
      const { nextPageToken: token } = await t.promotionalCredits.listPromotionalCredits({ pageSize: 1, pageToken: '' });
      const other = await newTenant(server.dataSource);
      const otherClient = promotionalCredits(server.address, other.rwKey);
      try {
        await otherClient.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n });
        const err = await expectError(otherClient.listPromotionalCredits({ pageSize: 1, pageToken: token }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
        expect(Object.keys(err.fields)).to.deep.equal(['page_token']);
      } finally {
        otherClient.close();
      }
    });

    it('a page walk during concurrent inserts sees each entry that existed when it began exactly once', async () => {
      await addMany(60, 'old');
      const existing = (await walk(t.promotionalCredits, {}, 100)).map((e) => e.id);
      expect(existing).to.have.length(60);
      const inserting = (async () => {
        for (let i = 0; i < 15; i++) {
          await Promise.all([
            t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'new', amount: 1n }),
            t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'old', amount: 1n }),
            t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'old', amount: 1n }),
          ]);
        }
      })();
      const seen: string[] = [];
      let pageToken = '';
      do {
        const page = await t.promotionalCredits.listPromotionalCredits({ pageSize: 4, pageToken });
        seen.push(...page.promotionalCredits.map((e) => e.id));
        pageToken = page.nextPageToken;
        await new Promise((resolve) => setImmediate(resolve));
      } while (pageToken !== '');
      await inserting;
      expect(new Set(seen).size, 'no entry seen twice').to.equal(seen.length);
      const seenSet = new Set(seen);
      expect(existing.filter((id) => !seenSet.has(id)), 'pre-existing entries missed').to.deep.equal([]);
      // Entries added later are newer than every pre-existing one: past the first page the cursor excludes them.
      expect(seen.slice(4).filter((id) => !existing.includes(id))).to.deep.equal([]);
      expect(await walk(t.promotionalCredits, {}, 100)).to.have.length(60 + 45);
      expect(await ledgerProblemsOf(server.dataSource.manager, t.tenant.id)).to.deep.equal([]);
    });
  });

  describe('entries', () => {
    const t = useTenantClients({ per: 'test' });

    it('answers every field of each entry as its write answered it and as GetPromotionalCredit does', async () => {
      const c = t.promotionalCredits;
      const customerId = 'fields';
      const expireTime = new Date(Date.now() + 86_400_000 + 123.456);
      const written: PromotionalCredit[] = [];
      const keep = (entry: PromotionalCredit | undefined) => {
        expect(entry).to.not.equal(undefined);
        written.push(entry!);
        return entry!;
      };
      // Beyond 2^53 (exact), free text with what JSON escapes, expiring with metadata, a deduct drawing from both lots, its reversal, other currencies.
      keep(
        (
          await c.addPromotionalCredits({
            ...base,
            customerId,
            amount: 2n ** 60n + 1n,
            description: 'line one\n\t"two" \\ three\r\n😀 é \u2028',
            reference: 'big\t{"not": "json"}',
            metadata: { empty: '{}', 'new.line': 'a\nb \\"\t' },
          })
        ).promotionalCredit,
      );
      keep(
        (
          await c.addPromotionalCredits({
            ...base,
            customerId,
            amount: 250n,
            creditType: CreditType.CREDIT_TYPE_LOYALTY_CREDITS,
            expireTime,
            metadata: { order: 'o-1', note: 'é ✓ "quoted" \\ back' },
          })
        ).promotionalCredit,
      );
      const deduct = keep((await c.deductPromotionalCredits({ ...base, customerId, amount: 300n, metadata: { why: 'checkout' } })).promotionalCredit);
      expect(deduct.allocations).to.have.length(2);
      keep((await c.reversePromotionalCredit({ id: deduct.id, description: 'refund', reference: 'r-1', metadata: {} })).promotionalCredit);
      keep((await c.addPromotionalCredits({ ...base, customerId, amount: 5n, currencyCode: 'JPY' })).promotionalCredit);
      keep((await c.addPromotionalCredits({ ...base, customerId, amount: 7n, currencyCode: 'BHD' })).promotionalCredit);

      const listed = await walk(c, { customerId: { is: customerId } }, 2);
      expect(listed).to.deep.equal([...written].reverse());
      for (const entry of listed) expect((await c.getPromotionalCredit({ id: entry.id })).promotionalCredit).to.deep.equal(entry);
    });

    it('answers a page read again from the entries it kept, as the first time, and takes none kept under another tenant', async () => {
      const c = t.promotionalCredits;
      for (let i = 1; i <= 3; i++) {
        await c.addPromotionalCredits({ ...base, customerId: 'again', amount: BigInt(i), description: `line ${i}\n"next"`, metadata: { n: `${i}` } });
      }
      const first = await walk(c, { customerId: { is: 'again' } }, 2);
      expect(first).to.have.length(3);
      const kept = first.map((entry) => READ_ENTRIES.get(entry.id));
      expect(kept.map((entry) => entry?.tenantId), 'kept once read').to.deep.equal(first.map(() => t.tenant.id));
      // The same id kept for another tenant (as no real entry is): must be read, not taken.
      READ_ENTRIES.remember(Object.assign({}, kept[0]!, { tenantId: randomUUID(), description: 'not this tenant' }));

      expect(await walk(c, { customerId: { is: 'again' } }, 3)).to.deep.equal(first);
      expect(READ_ENTRIES.get(first[1]!.id), 'taken as kept: the same object, not read again').to.equal(kept[1]);
      expect(READ_ENTRIES.get(first[0]!.id)).to.deep.include({ tenantId: t.tenant.id, description: first[0]!.description });
      for (const entry of first) expect((await c.getPromotionalCredit({ id: entry.id })).promotionalCredit).to.deep.equal(entry);
    });
  });

  describe('tenant isolation', () => {
    it('a second tenant sees nothing of the first, by id, list, filter or balance', async () => {
      const first = await newTenant(server.dataSource);
      const second = await newTenant(server.dataSource);
      const a = promotionalCredits(server.address, first.rwKey);
      const b = promotionalCredits(server.address, second.rwKey);
      try {
        const entry = (await a.addPromotionalCredits({ ...base, customerId: 'shared-id', amount: 500n })).promotionalCredit!;
        await a.addPromotionalCredits({ ...base, customerId: 'only-a', amount: 5n });
        const { nextPageToken } = await a.listPromotionalCredits({ pageSize: 1, pageToken: '' });
        expect(nextPageToken).to.not.equal('');

        await expectError(b.getPromotionalCredit({ id: entry.id }), status.NOT_FOUND, 'PROMOTIONAL_CREDIT_NOT_FOUND');
        const listB = (request: Partial<ListPromotionalCreditsRequest>) => walk(b, request);
        expect(await listB({})).to.deep.equal([]);
        expect(await listB({ id: { is: entry.id } })).to.deep.equal([]);
        expect(await listB({ id: { startsWith: entry.id.slice(0, 8) } })).to.deep.equal([]);
        expect(await listB({ customerId: { is: 'shared-id' } })).to.deep.equal([]);
        expect(await listB({ customerId: { startsWith: 'only' } })).to.deep.equal([]);
        expect(await listB({ type: typeFilter({ is: INCREMENT }) })).to.deep.equal([]);
        expect(await listB({ createTime: { before: new Date(Date.now() + 60_000) } })).to.deep.equal([]);
        expect((await b.getCustomerBalance({ customerId: 'shared-id' })).balance!.balances).to.deep.equal([]);
        await expectError(b.deductPromotionalCredits({ ...base, customerId: 'shared-id', amount: 1n }), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');

        // The same customer id in the second tenant is another customer with its own balance and chain.
        const own = (await b.addPromotionalCredits({ ...base, customerId: 'shared-id', amount: 7n })).promotionalCredit!;
        expect(own.closingBalance).to.equal(7n);
        expect((await a.getCustomerBalance({ customerId: 'shared-id' })).balance!.balances[0]!.amount).to.equal(500n);
        expect((await listB({})).map((e) => e.id)).to.deep.equal([own.id]);
        await expectError(a.getPromotionalCredit({ id: own.id }), status.NOT_FOUND, 'PROMOTIONAL_CREDIT_NOT_FOUND');
      } finally {
        a.close();
        b.close();
      }
    });
  });
});
