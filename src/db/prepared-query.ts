import type { EntityManager } from 'typeorm';

interface PgClient {
  query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

/**
 * Runs one statement as a named prepared statement on the manager's
 * connection (its transaction's, or one borrowed from the pool for just this
 * statement). PostgreSQL parses and plans it once per connection instead of
 * on every call, which for short statements (reads by key, the idempotency
 * lock and lookup) is much of the database's CPU per call. `name` must
 * be unique per statement text. Goes through TypeORM's logger like any query.
 */
export async function preparedQuery<T>(manager: EntityManager, name: string, text: string, values: unknown[]): Promise<{ rows: T[]; rowCount: number }> {
  const runner = manager.queryRunner ?? manager.connection.createQueryRunner();
  const borrowed = manager.queryRunner === undefined;
  try {
    const client = (await runner.connect()) as PgClient;
    manager.connection.logger.logQuery(text, values, runner);
    const result = await client.query({ name, text, values });
    return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
  } finally {
    if (borrowed) await runner.release();
  }
}
