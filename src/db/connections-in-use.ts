import { Client, type Pool, type PoolClient } from 'pg';
import type { DataSource } from 'typeorm';
import { connectionOf } from './data-source';
import { POOL_WAIT_TIMEOUT, PoolExhaustedError } from './db-errors';

/**
 * The pooled connections this process has checked out (in a statement or a
 * transaction), so that a shutdown whose grace period is over can end their
 * database work: closing the pool does not (a checked-out connection is
 * ended only when given back), and a statement waiting on a lock would run
 * on and commit after the caller had been told to retry (review: a Deduct
 * answered UNAVAILABLE "retry" was written once the lock was released).
 *
 * It also tells an exhausted pool from an unreachable database: a wait for a
 * connection that times out while every connection is checked out fails
 * with PoolExhaustedError instead of pg-pool's error (while connections are
 * still being opened, it is the database that does not answer). Both are
 * UNAVAILABLE DATABASE_UNAVAILABLE; the message and the log line say which,
 * where the message sent on-call to a database its health check found well.
 */
export class ConnectionsInUse {
  private readonly inUse = new Set<PoolClient>();
  private closed = false;

  /** Starts tracking the data source's pool (the data source must be initialized). */
  constructor(private readonly dataSource: DataSource) {
    const pool = (dataSource.driver as unknown as { master?: Pool }).master;
    if (!pool) throw new Error('the data source has no pool: initialize it first');
    pool.on('acquire', (client) => {
      // Once terminate() ran, a call that was waiting for a connection gets
      // one whose socket is already closed: it fails before sending anything
      // (review: one waiting in the pool's queue got a fresh connection after
      // the others were terminated, and its deduction committed later).
      if (this.closed) (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      else this.inUse.add(client);
    });
    pool.on('release', (_err, client) => this.inUse.delete(client));
    pool.on('remove', (client) => this.inUse.delete(client));
    this.tellExhaustion(pool);
  }

  /** Wraps the pool's connect (TypeORM calls it with a callback, pg's own helpers without) to name an exhausted pool's timeouts. */
  private tellExhaustion(pool: Pool): void {
    const size = pool.options.max ?? 10;
    const named = (err: Error | undefined): Error | undefined =>
      err?.message === POOL_WAIT_TIMEOUT && this.inUse.size >= size ? Object.assign(new PoolExhaustedError(size), { cause: err }) : err;
    const connect = pool.connect.bind(pool) as (callback?: (err: Error | undefined, client: PoolClient | undefined, done: (release?: unknown) => void) => void) => Promise<PoolClient> | undefined;
    Object.assign(pool, {
      connect: (callback?: (err: Error | undefined, client: PoolClient | undefined, done: (release?: unknown) => void) => void) =>
        callback ? connect((err, client, done) => callback(named(err), client, done)) : connect()!.catch((err: Error) => Promise.reject(named(err))),
    });
  }

  get size(): number {
    return this.inUse.size;
  }

  /**
   * Terminates the database sessions of the connections in use
   * (pg_terminate_backend, from a connection of its own: the pool may have
   * none to spare): their transactions roll back, and their statements fail
   * at once with a connection error. From then on every connection the pool
   * hands out is closed before it can be used. Answers how many were
   * terminated.
   */
  async terminate(): Promise<number> {
    this.closed = true;
    const pids = [...this.inUse].map((client) => (client as unknown as { processID?: number }).processID).filter((pid): pid is number => typeof pid === 'number');
    if (pids.length === 0) return 0;
    const client = new Client(Object.assign(connectionOf(this.dataSource), { application_name: 'credits-shutdown' }));
    await client.connect();
    try {
      const { rows } = await client.query<{ ended: number }>(`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS ended FROM unnest($1::int[]) AS pid`, [pids]);
      return rows[0]!.ended;
    } finally {
      await client.end();
    }
  }
}
