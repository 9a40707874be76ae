import type { Page } from '../common/pager';

/** A List response: the page's items in proto form under the response's repeated field, and the next page's token. */
export function pageToProto<F extends string, T, P>(field: F, page: Page<T>, toProto: (item: T) => P): Record<F, P[]> & { nextPageToken: string } {
  const items = { [field]: page.items.map((item) => toProto(item)) } as Record<F, P[]>;
  return { ...items, nextPageToken: page.nextPageToken };
}
