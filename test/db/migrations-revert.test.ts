import { expect } from 'chai';
import { MIGRATIONS, runMigrations } from '../../src/db/data-source';
import { objectsOf, readSqlDefinition, SQL_DEFINITIONS } from '../../src/db/sql-definitions';
import { withMigratedScratchDatabase } from '../support/scratch-database';

/**
 * Every migration's down, newest first, down to an empty schema, and up
 * again. A full revert used to stop at Events1764500000000, whose table's
 * row type the SQL definitions' functions take (PostgreSQL refused to drop
 * it), and two older downs dropped functions the definitions had replaced
 * since.
 */
describe('migrations revert', function () {
  this.timeout(60_000);

  it('reverts every migration to an empty schema, and migrates again', async function () {
    await withMigratedScratchDatabase(this, 'migrations_revert', async (dataSource) => {
      const inSchema = async () => {
        const rows: Array<{ kind: string; name: string }> = await dataSource.query(
          `SELECT 'relation' AS kind, c.relname AS name FROM pg_class AS c WHERE c.relnamespace = 'public'::regnamespace
           UNION ALL
           SELECT 'function', p.oid::regprocedure::text FROM pg_proc AS p
            WHERE p.pronamespace = 'public'::regnamespace
              AND NOT EXISTS (SELECT FROM pg_depend AS d WHERE d.objid = p.oid AND d.deptype = 'e')
           UNION ALL
           SELECT 'type', t.typname FROM pg_type AS t
            WHERE t.typnamespace = 'public'::regnamespace AND t.typrelid = 0 AND t.typelem = 0 AND t.typtype <> 'd'
           UNION ALL
           SELECT 'domain', t.typname FROM pg_type AS t WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'd'
           ORDER BY 1, 2`,
        );
        return rows.map((r) => `${r.kind} ${r.name}`);
      };
      const installed = await inSchema();
      for (const definition of SQL_DEFINITIONS) {
        // What dropSqlDefinitions takes out is what the text makes.
        for (const f of objectsOf(readSqlDefinition(definition)).functions) expect(installed.join('\n'), definition.name).to.include(`function ${f}(`);
      }

      for (let left = MIGRATIONS.length; left > 0; left--) await dataSource.undoLastMigration({ transaction: 'each' });
      expect(await dataSource.query(`SELECT name FROM migrations`)).to.deep.equal([]);
      // TimeOrderedIds1765200000000 keeps credits_uuid_v7() on purpose (its
      // down says why); TypeORM's own table stays.
      expect(await inSchema()).to.deep.equal([
        'function credits_uuid_v7()',
        'relation PK_8c82d7f526340ab734260ea46be',
        'relation migrations',
        'relation migrations_id_seq',
      ]);

      const applied = await runMigrations(dataSource);
      expect(applied).to.have.length(MIGRATIONS.length + SQL_DEFINITIONS.length);
      expect(await inSchema()).to.deep.equal(installed);
      const [{ n }] = await dataSource.query(`SELECT count(*)::int AS n FROM sql_definitions`);
      expect(n).to.equal(SQL_DEFINITIONS.length);
    });
  });
});
