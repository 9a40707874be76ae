/**
 * Every item of a List RPC, page after page from the first, in the order
 * served. `items` picks the page's repeated field (and may check the page);
 * a walk that does not end is an error, not a hang.
 */
export async function walkPages<Page extends { nextPageToken: string }, Item>(
  list: (pageToken: string) => Promise<Page>,
  items: (page: Page) => Item[],
): Promise<Item[]> {
  const all: Item[] = [];
  let pageToken = '';
  for (let pages = 0; pages < 1000; pages++) {
    const page = await list(pageToken);
    all.push(...items(page));
    if (page.nextPageToken === '') return all;
    pageToken = page.nextPageToken;
  }
  throw new Error('page walk did not end');
}
