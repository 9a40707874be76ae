import type { DataSource } from 'typeorm';

/** Events deleted per transaction: small enough to hold locks briefly, large enough to keep up with a busy week. */
export const PRUNE_BATCH = 5_000;

/**
 * Deletes events older than `retentionHours`, oldest first, a batch per
 * transaction until none is left (or `maxBatches` ran, or `signal` aborted:
 * after the batch in progress), and moves the
 * retention watermarks (event_watermarks: per tenant and event type, the
 * newest (xid, position) deleted) in the same transaction as each delete,
 * so that a reader sees both or neither (see EventRepository); and the
 * global one the previous version reads. Answers how many were deleted.
 *
 * Every replica may run it at once: each transaction first writes its
 * retention into event_retention (the append-only trigger allows a DELETE
 * only of rows older than that), which locks that one row, so prunes take
 * turns, and the watermark only ever moves forward.
 */
export async function pruneEvents(
  dataSource: DataSource,
  retentionHours: number,
  limits = { batch: PRUNE_BATCH, maxBatches: 1_000 },
  signal?: AbortSignal,
): Promise<number> {
  let deleted = 0;
  for (let batch = 0; batch < limits.maxBatches && !signal?.aborted; batch++) {
    const count = await dataSource.transaction(async (manager) => {
      await manager.query(`UPDATE event_retention SET hours = $1`, [retentionHours]);
      const rows: Array<{ deleted: string }> = await manager.query(
        `WITH doomed AS (
           SELECT xid, position FROM events
            WHERE create_time < clock_timestamp() - make_interval(hours => $1)
            ORDER BY create_time
            LIMIT $2
         ), gone AS (
           DELETE FROM events e USING doomed d WHERE e.xid = d.xid AND e.position = d.position
           RETURNING e.xid, e.position, e.tenant_id, e.type
         ), newest AS (
           SELECT DISTINCT ON (tenant_id, type) tenant_id, type, xid, position
             FROM gone
            ORDER BY tenant_id, type, xid DESC, position DESC
         ), moved AS (
           INSERT INTO event_watermarks AS w (tenant_id, type, pruned_xid, pruned_position)
           SELECT tenant_id, type, xid, position FROM newest
           ON CONFLICT (tenant_id, type) DO UPDATE SET pruned_xid = excluded.pruned_xid, pruned_position = excluded.pruned_position
            WHERE (excluded.pruned_xid, excluded.pruned_position) > (w.pruned_xid, w.pruned_position)
         ), moved_globally AS (
           -- Read only by replicas of the previous version (see migration 1764900000000).
           UPDATE event_retention r SET pruned_xid = n.xid, pruned_position = n.position
             FROM (SELECT xid, position FROM gone ORDER BY xid DESC, position DESC LIMIT 1) n
            WHERE r.pruned_xid IS NULL OR (n.xid, n.position) > (r.pruned_xid, r.pruned_position)
         )
         SELECT count(*)::text AS deleted FROM gone`,
        [retentionHours, limits.batch],
      );
      return Number(rows[0]!.deleted);
    });
    deleted += count;
    if (count < limits.batch) break;
  }
  return deleted;
}
