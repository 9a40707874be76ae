import { expect } from 'chai';
import { Client } from 'pg';
import type { DataSource } from 'typeorm';
import { installSqlRecorder, recordSql } from '../../bench/sql-recorder';
import { connectionOf } from '../../src/db/data-source';
import { openTestDataSource } from '../support/database';

/**
 * The benchmark records what one call sends to replay it through pgbench.
 * The server's own connections (readiness probe, LISTEN keepalives) send
 * `SELECT 1` whenever their timers fire; one that fell inside a sample made
 * its two recordings differ, generated ids went undetected and the replay
 * failed on a duplicate key. Only the pool's statements are the call's.
 */
describe('bench SQL recorder', () => {
  let dataSource: DataSource;
  let background: Client;
  before(async () => {
    installSqlRecorder();
    dataSource = await openTestDataSource(2);
    background = new Client({ ...connectionOf(dataSource), application_name: 'credits-test-background' });
    await background.connect();
  });
  after(async () => {
    await background.end();
    await dataSource.destroy();
  });

  it("records the pool's statements of the call, not those of a connection of its own sent meanwhile", async () => {
    const { statements } = await recordSql(async () => {
      await dataSource.query(`SELECT $1::int AS one`, [1]);
      await background.query('SELECT 1');
      await dataSource.query(`SELECT $1::text AS two`, ['2']);
    });
    expect(statements.map((st) => [st.index, st.text, st.values])).to.deep.equal([
      [0, 'SELECT $1::int AS one', ['1']],
      [1, 'SELECT $1::text AS two', ['2']],
    ]);
  });
});
