import type { PromotionalCreditEntity } from './promotional-credit.entity';

/**
 * How many entries RECENT_ENTRIES keeps: some two seconds of writes at full
 * speed, where streams follow within a fraction of one. READ_ENTRIES keeps
 * as many: the latest pages of some 200 customers.
 */
export const RECENT_ENTRIES_KEPT = 4_096;

/**
 * Entries whose free text (description, reference, metadata) and lots
 * drawn weigh more than this many characters are not kept, so that the
 * whole of each stays within some 30 MB whatever callers write (an entry
 * may carry 20 metadata values of 500 characters, a deduction hundreds of
 * lots; 4,096 entries of 2,000 one-byte characters measured 17 MB of
 * heap); the readers read those back. Usual entries weigh a few dozen.
 */
export const RECENT_ENTRY_MAX_WEIGHT = 2_048;

/**
 * Ledger entries by id, the latest `capacity` kept: an entry never changes
 * once written, so one kept is exact for as long as it is kept. Two of them
 * (below): the entries this process wrote lately, and those it read lately
 * for list pages. An entry kept that a rolled-back transaction wrote (a
 * group that failed, a caller's transaction) is never asked for, since no
 * committed row names it, and leaves with the oldest. Kept in insertion
 * order; the oldest leave first.
 */
export class RecentEntries {
  private readonly entries = new Map<string, PromotionalCreditEntity>();
  /**
   * The kept ids in a ring, oldest at `next`: eviction without walking the
   * Map from its start (past the holes its deletions leave, 1-2 µs a time).
   */
  private readonly ids: Array<string | undefined>;
  private next = 0;

  constructor(capacity: number) {
    this.ids = new Array<string | undefined>(capacity).fill(undefined);
  }

  remember(entry: PromotionalCreditEntity): void {
    if (entry.id === '') return; // validate_only: never written
    if (weightOf(entry) > RECENT_ENTRY_MAX_WEIGHT) return;
    // Kept already (two reads of one page at once, or another tenant's id): replaced where it is, so that its slot's eviction cannot drop the newer one early.
    if (this.entries.has(entry.id)) {
      this.entries.set(entry.id, entry);
      return;
    }
    const oldest = this.ids[this.next];
    if (oldest !== undefined) this.entries.delete(oldest);
    this.ids[this.next] = entry.id;
    this.next = (this.next + 1) % this.ids.length;
    this.entries.set(entry.id, entry);
  }

  get(id: string): PromotionalCreditEntity | undefined {
    return this.entries.get(id);
  }

  clear(): void {
    this.entries.clear();
    this.ids.fill(undefined);
  }
}

/** Characters of an entry's free text, and 64 for each lot it drew from or went back to. */
function weightOf(entry: PromotionalCreditEntity): number {
  let weight = entry.description.length + entry.reference.length + (entry.allocations?.length ?? 0) * 64;
  for (const key in entry.metadata) weight += key.length + entry.metadata[key]!.length;
  return weight;
}

/**
 * The entries this process wrote lately, as the write path answered them
 * (PromotionalCreditRepository.apply). The outbox's readers
 * (src/events/event.repository.ts) need the entry of every entry event,
 * most often within a second of its write and in the process that wrote
 * it; taking it from here spares reading some twenty columns back from
 * promotional_credits and parsing them (two thirds of the server's CPU per
 * event read).
 */
export const RECENT_ENTRIES = new RecentEntries(RECENT_ENTRIES_KEPT);

/**
 * The entries of list pages this process read lately (listMany): a page
 * read again (a customer's latest entries, asked for by every refresh of a
 * screen) answers the same entry objects, which are then neither parsed
 * nor made again, and whose messages are mapped and encoded once (see
 * promotionalCreditMessage). The bench's list-page reads 2,000 entries
 * over and over: 217-229 → 174-196 µs of the server's CPU per call (README,
 * "What moved the figures"). Full, with their messages and encodings: 8 MB
 * of usual entries, 25 MB of entries of 2,000 characters.
 */
export const READ_ENTRIES = new RecentEntries(RECENT_ENTRIES_KEPT);
