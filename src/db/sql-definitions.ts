import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { QueryRunner } from 'typeorm';

/**
 * A SQL function kept beside the code that calls it (`src/<area>/sql/*.sql`),
 * so a reader of a repository finds the statement it runs there, not in a
 * migration. Migrations stay immutable history for tables, indexes and
 * triggers; a function's text is code, and is (re)applied after the
 * migrations whenever it is newer than what the database holds (Flyway calls
 * these "repeatable migrations").
 *
 * `version` rises with every change that lands: a database holding a higher
 * version is left alone (an older replica of a rolling deploy must not put its
 * old function back). The same version with other text is applied again: that
 * only happens in development, between edits of an unreleased change.
 */
export interface SqlDefinition {
  name: string;
  version: number;
  /** Path under src/. The file must be safe to run again (DROP … IF EXISTS / CREATE OR REPLACE). */
  file: string;
}

export const SQL_DEFINITIONS: SqlDefinition[] = [
  { name: 'promotional_credit_entry_hash', version: 3, file: 'promotional-credits/sql/promotional-credit-entry-hash.sql' },
  { name: 'promotional_credit_apply', version: 25, file: 'promotional-credits/sql/promotional-credit-apply.sql' },
  { name: 'coupon_redeem', version: 13, file: 'coupons/sql/coupon-redeem.sql' },
];

/** src/ of this checkout (this file runs from dist/src/db/). */
const SOURCE_ROOT = path.resolve(__dirname, '..', '..', '..', 'src');

export function readSqlDefinition(definition: SqlDefinition): string {
  return fs.readFileSync(path.join(SOURCE_ROOT, definition.file), 'utf8');
}

/**
 * Applies every definition that is missing or older in the database, each in
 * its own transaction with its bookkeeping row. The caller holds the
 * migration lock, so replicas starting together apply each one once.
 */
export async function applySqlDefinitions(runner: QueryRunner, definitions = SQL_DEFINITIONS): Promise<string[]> {
  const applied: string[] = [];
  for (const definition of definitions) {
    const text = readSqlDefinition(definition);
    const sha256 = createHash('sha256').update(text).digest('hex');
    const rows: Array<{ version: number; sha256: string }> = await runner.query(`SELECT version, sha256 FROM sql_definitions WHERE name = $1`, [
      definition.name,
    ]);
    const stored = rows[0];
    if (stored && (stored.version > definition.version || (stored.version === definition.version && stored.sha256 === sha256))) continue;
    await runner.startTransaction();
    try {
      await runner.query(text);
      await runner.query(
        `INSERT INTO sql_definitions (name, version, sha256) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, sha256 = EXCLUDED.sha256, apply_time = clock_timestamp()`,
        [definition.name, definition.version, sha256],
      );
      await runner.commitTransaction();
    } catch (err) {
      await runner.rollbackTransaction();
      throw err;
    }
    applied.push(`${definition.name} v${definition.version}`);
  }
  return applied;
}

/**
 * The functions and types a definition's text makes (its `CREATE FUNCTION`
 * and `CREATE TYPE` statements).
 */
export function objectsOf(text: string): { functions: string[]; types: string[] } {
  const names = (pattern: RegExp) => [...new Set([...text.matchAll(pattern)].map((m) => m[1]!))];
  return { functions: names(/^CREATE (?:OR REPLACE )?FUNCTION (\w+)\(/gm), types: names(/^CREATE TYPE (\w+)/gm) };
}

/**
 * Takes the SQL definitions out of the database: their functions (every
 * overload), then their types, then their rows in sql_definitions. For a
 * down migration that removes something they use: PostgreSQL refuses to
 * drop a table whose row type a function takes. With the rows gone, the
 * binary that migrates next installs its own text (applySqlDefinitions:
 * missing). Until then every call that runs them fails, so a revert that
 * needs this is one for a stopped service.
 */
export async function dropSqlDefinitions(runner: QueryRunner, definitions = SQL_DEFINITIONS): Promise<void> {
  const objects = definitions.map((definition) => objectsOf(readSqlDefinition(definition)));
  const functions: Array<{ f: string }> = await runner.query(
    `SELECT p.oid::regprocedure::text AS f FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
      WHERE n.nspname = current_schema() AND p.proname = ANY($1)`,
    [objects.flatMap((o) => o.functions)],
  );
  for (const { f } of functions) await runner.query(`DROP FUNCTION ${f}`);
  for (const type of objects.flatMap((o) => o.types)) await runner.query(`DROP TYPE IF EXISTS ${type}`);
  await runner.query(`DELETE FROM sql_definitions WHERE name = ANY($1)`, [definitions.map((definition) => definition.name)]);
}
