import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { DomainError, ErrorReason, Violations } from '../../src/common/domain-error';
import { PageTokenCodec } from '../../src/common/page-token';
import { checkPageSize, Pager } from '../../src/common/pager';

const TENANT = '7d1c5f8e-3a52-4d7b-9c1e-0f2a6b8c4d10';
const FILTER = '["rows",null]';

/** Rows with seq 1..count, served newest first the way the repositories do, recording each fetch. */
function table(count: number) {
  const rows = Array.from({ length: count }, (_, i) => ({ seq: BigInt(i + 1) })).reverse();
  const fetches: Array<{ beforeSeq: bigint | undefined; limit: number }> = [];
  const fetch = async (beforeSeq: bigint | undefined, limit: number) => {
    fetches.push({ beforeSeq, limit });
    return rows.filter((r) => beforeSeq === undefined || r.seq < beforeSeq).slice(0, limit);
  };
  return { fetch, fetches };
}

describe('pager (unit)', () => {
  const pager = new Pager(new PageTokenCodec(randomBytes(32)));

  it('asks for one row more than the page, strictly before the cursor, and walks every row once', async () => {
    const { fetch, fetches } = table(7);
    const seen: bigint[] = [];
    let pageToken = '';
    do {
      const page = await pager.page(TENANT, FILTER, { pageSize: 3, pageToken }, fetch);
      expect(page.items.length).to.be.at.most(3);
      seen.push(...page.items.map((r) => r.seq));
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    expect(seen).to.deep.equal([7n, 6n, 5n, 4n, 3n, 2n, 1n]);
    expect(fetches).to.deep.equal([
      { beforeSeq: undefined, limit: 4 },
      { beforeSeq: 5n, limit: 4 },
      { beforeSeq: 2n, limit: 4 },
    ]);
  });

  it('answers no next token when the rows end exactly at the page size', async () => {
    const page = await pager.page(TENANT, FILTER, { pageSize: 3, pageToken: '' }, table(3).fetch);
    expect(page.items.map((r) => r.seq)).to.deep.equal([3n, 2n, 1n]);
    expect(page.nextPageToken).to.equal('');
  });

  it('reads page_size 0 as 10 and caps it at 100', async () => {
    const { fetch, fetches } = table(0);
    await pager.page(TENANT, FILTER, { pageSize: 0, pageToken: '' }, fetch);
    await pager.page(TENANT, FILTER, { pageSize: 1000, pageToken: '' }, fetch);
    expect(fetches.map((f) => f.limit)).to.deep.equal([11, 101]);
  });

  it('refuses a token of other filters before it fetches anything', async () => {
    const { fetch, fetches } = table(5);
    const first = await pager.page(TENANT, FILTER, { pageSize: 2, pageToken: '' }, fetch);
    let caught: unknown;
    await pager.page(TENANT, '["rows","x"]', { pageSize: 2, pageToken: first.nextPageToken }, fetch).catch((err: unknown) => (caught = err));
    expect(caught).to.be.instanceOf(DomainError);
    expect((caught as DomainError).reason).to.equal(ErrorReason.ValidationFailed);
    expect(fetches).to.have.length(1);
  });

  it('checks page_size: a whole number, not negative', () => {
    for (const [pageSize, bad] of [[0, false], [100, false], [1000, false], [-1, true], [1.5, true]] as const) {
      const v = new Violations();
      checkPageSize(v, pageSize);
      expect(v.any, `page_size ${pageSize}`).to.equal(bad);
    }
  });
});
