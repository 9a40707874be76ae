import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { READ_SQL } from '../../src/events/event.repository';
import { openTestDataSource } from '../support/database';

/** PostgreSQL's default jit_above_cost: a statement planned above it is compiled at every execution where JIT is available. */
const JIT_ABOVE_COST = 100_000;
const PAGE = 100;

interface PlanNode {
  'Plan Rows': number;
  'Total Cost': number;
}

/**
 * The outbox read runs for every page of every stream and ListEvents call.
 * Planned for far more rows than it can answer, it cost past
 * jit_above_cost, and a PostgreSQL built with JIT compiled it at each
 * execution (10 ms of CPU for a page of 100, against 0.6 ms). The plan is
 * checked both ways the service gets it: custom (the first executions of
 * the prepared statement) and generic (later ones).
 */
describe('events: the outbox read is planned for a page', () => {
  let dataSource: DataSource;
  before(async () => {
    dataSource = await openTestDataSource(1);
  });
  after(async () => {
    await dataSource.destroy();
  });

  const expectPageSized = (plan: PlanNode, how: string) => {
    expect(plan['Plan Rows'], `${how}: estimated rows`).to.be.at.most(PAGE + 1);
    expect(plan['Total Cost'], `${how}: estimated cost`).to.be.below(JIT_ABOVE_COST / 10);
  };

  it('estimates at most a page and one row, far below the cost PostgreSQL compiles (JIT) at, as a custom and as a generic plan', async () => {
    const tenantId = randomUUID();
    const [custom] = (await dataSource.query(`EXPLAIN (FORMAT JSON) ${READ_SQL}`, [tenantId, '5', '7', null, null, PAGE, true])) as Array<{
      'QUERY PLAN': Array<{ Plan: PlanNode }>;
    }>;
    expectPageSized(custom!['QUERY PLAN'][0]!.Plan, 'custom plan');

    const runner = dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.query(`SET plan_cache_mode = force_generic_plan`);
      await runner.query(`PREPARE events_read_plan_test AS ${READ_SQL}`);
      const [generic] = (await runner.query(
        `EXPLAIN (FORMAT JSON) EXECUTE events_read_plan_test('${tenantId}', '5', '7', NULL, NULL, ${PAGE}, true)`,
      )) as Array<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>;
      expectPageSized(generic!['QUERY PLAN'][0]!.Plan, 'generic plan');
    } finally {
      await runner.query(`DEALLOCATE ALL`);
      await runner.query(`RESET plan_cache_mode`);
      await runner.release();
    }
  });
});
