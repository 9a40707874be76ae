import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { applySqlDefinitions, readSqlDefinition, SQL_DEFINITIONS, type SqlDefinition } from '../../src/db/sql-definitions';
import { openTestDataSource } from '../support/database';

describe('SQL definitions kept beside their code', () => {
  let dataSource: DataSource;
  const name = 'test_sql_definition_probe';
  // A throwaway definition file under src/ (where definitions live), removed after.
  const file = 'db/test-sql-definition-probe.sql';
  const absolute = path.resolve(__dirname, '..', '..', '..', 'src', file);
  const write = (answer: number) =>
    fs.writeFileSync(absolute, `CREATE OR REPLACE FUNCTION ${name}() RETURNS integer LANGUAGE sql AS $$ SELECT ${answer} $$;\n`);
  const answer = async () => ((await dataSource.query(`SELECT ${name}() AS n`)) as Array<{ n: number }>)[0]!.n;
  const apply = async (definition: SqlDefinition) => {
    const runner = dataSource.createQueryRunner();
    try {
      return await applySqlDefinitions(runner, [definition]);
    } finally {
      await runner.release();
    }
  };

  before(async () => {
    dataSource = await openTestDataSource(2);
  });
  after(async () => {
    await dataSource.query(`DROP FUNCTION IF EXISTS ${name}()`);
    await dataSource.query(`DELETE FROM sql_definitions WHERE name = $1`, [name]);
    fs.rmSync(absolute, { force: true });
    await dataSource.destroy();
  });

  it('every registered definition is applied with its current text', async () => {
    const stored: Array<{ name: string; version: number }> = await dataSource.query(`SELECT name, version FROM sql_definitions`);
    for (const definition of SQL_DEFINITIONS) {
      expect(readSqlDefinition(definition)).to.not.equal('');
      expect(stored.find((s) => s.name === definition.name)?.version, definition.name).to.equal(definition.version);
    }
  });

  it('applies a newer version, re-applies edited text of the same version, and never goes back to an older one', async () => {
    write(1);
    expect(await apply({ name, version: 1, file })).to.deep.equal([`${name} v1`]);
    expect(await answer()).to.equal(1);
    expect(await apply({ name, version: 1, file }), 'unchanged: nothing to do').to.deep.equal([]);
    write(2);
    expect(await apply({ name, version: 1, file }), 'same version, edited text (development)').to.deep.equal([`${name} v1`]);
    expect(await answer()).to.equal(2);
    write(3);
    expect(await apply({ name, version: 2, file })).to.deep.equal([`${name} v2`]);
    expect(await answer()).to.equal(3);
    // An older replica of a rolling deploy starts with its version 1 text.
    write(1);
    expect(await apply({ name, version: 1, file })).to.deep.equal([]);
    expect(await answer()).to.equal(3);
  });

  it('rolls back a definition that fails, with its bookkeeping', async () => {
    fs.writeFileSync(absolute, `CREATE OR REPLACE FUNCTION ${name}() RETURNS integer LANGUAGE sql AS $$ SELECT 4 $$; SELECT no_such_function();\n`);
    let failed = false;
    try {
      await apply({ name, version: 3, file });
    } catch {
      failed = true;
    }
    expect(failed).to.equal(true);
    expect(await answer()).to.equal(3);
    const stored: Array<{ version: number }> = await dataSource.query(`SELECT version FROM sql_definitions WHERE name = $1`, [name]);
    expect(stored).to.deep.equal([{ version: 2 }]);
  });
});
