import type { Violations } from './domain-error';
import { seqOfPosition, type PageTokenCodec } from './page-token';

export const DEFAULT_PAGE_SIZE = 10;
export const MAX_PAGE_SIZE = 100;

/** The paging fields every List request has. */
export interface PageInput {
  pageSize: number;
  /** Empty: the first page. */
  pageToken: string;
}

/** One page of a List RPC, newest first; `nextPageToken` is empty on the last page. */
export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/** The page_size check every List request shares. */
export function checkPageSize(v: Violations, pageSize: number): void {
  if (!Number.isInteger(pageSize) || pageSize < 0) v.add('page_size', 'must not be negative');
}

/** page_size as the contract reads it: 0 means 10, capped at 100. */
export function effectivePageSize(requested: number): number {
  if (requested === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(requested, MAX_PAGE_SIZE);
}

/**
 * Reads `limit` rows of a list, newest first, with seq below `beforeSeq`
 * (all rows when undefined); the rows carry the seq they are ordered by.
 */
export type FetchBefore<T extends { seq: bigint }> = (beforeSeq: bigint | undefined, limit: number) => Promise<T[]>;

/**
 * Keyset paging, the one way every List RPC pages: rows are ordered by their
 * seq, newest first, and a page token holds the seq of the last row served,
 * so a walk sees each row that existed when it began exactly once while rows
 * are being inserted. The token is bound to the tenant and the filters
 * (`filterKey`); a tampered one, or one sent with other filters, is
 * INVALID_ARGUMENT.
 */
export class Pager {
  constructor(private readonly tokens: PageTokenCodec) {}

  /**
   * Decodes the token, fetches one row more than the page holds (strictly
   * before the cursor) to learn whether another page follows, and answers the
   * page with the token of the next one.
   */
  page<T extends { seq: bigint }>(tenantId: string, filterKey: string, input: PageInput, fetch: FetchBefore<T>): Promise<Page<T>> {
    return pageAfter(
      this.tokens,
      tenantId,
      filterKey,
      input,
      (row) => [row.seq.toString()],
      (position, limit) => fetch(position ? seqOfPosition(position) : undefined, limit),
    );
  }

  /** Paging in another order: see pageAfter. */
  pageAfter<T>(tenantId: string, filterKey: string, input: PageInput, positionOf: (row: T) => string[], fetch: (after: string[] | undefined, limit: number) => Promise<T[]>): Promise<Page<T>> {
    return pageAfter(this.tokens, tenantId, filterKey, input, positionOf, fetch);
  }
}

/**
 * Keyset paging in an order of its own (not newest first): the token holds
 * the position of the last row served, as `positionOf` writes it, and
 * `fetch` reads rows strictly after a position. Tokens are bound to the
 * tenant and `filterKey` as with Pager.page.
 */
export async function pageAfter<T>(
  tokens: PageTokenCodec,
  tenantId: string,
  filterKey: string,
  input: PageInput,
  positionOf: (row: T) => string[],
  fetch: (after: string[] | undefined, limit: number) => Promise<T[]>,
): Promise<Page<T>> {
  const after = tokens.decode(tenantId, filterKey, input.pageToken);
  const pageSize = effectivePageSize(input.pageSize);
  const rows = await fetch(after, pageSize + 1);
  const items = rows.slice(0, pageSize);
  const nextPageToken = rows.length > pageSize ? tokens.encode(tenantId, filterKey, positionOf(items[items.length - 1]!)) : '';
  return { items, nextPageToken };
}
