import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Metadata, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { startGrpcServer } from '../../src/grpc/server';
import { createLogger, type Logger } from '../../src/logger';
import { openTestDataSource } from '../support/database';
import { promotionalCredits } from '../support/server';
import { expectError } from '../support/status';
import { newTenant } from '../support/tenant';

/**
 * A call that fails on a bug (INTERNAL) is logged with its error, and the
 * error of a failed statement carries the row: pg's `detail` ("Failing row
 * contains (…)"), TypeORM's `parameters`. Found in review: the log line held
 * the customer's id, the description and the idempotency key.
 */
describe('the log line of a call that failed on a bug', function () {
  this.timeout(30_000);
  const marker = `FAILME${randomBytes(4).toString('hex')}`;
  const constraint = `test_fail_${marker.toLowerCase()}`;
  let dataSource: DataSource;
  let dir: string;
  let logFile: string;
  let logger: Logger;
  let server: Awaited<ReturnType<typeof startGrpcServer>>;

  before(async () => {
    dataSource = await openTestDataSource(4);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'credits-error-log-'));
    logFile = path.join(dir, 'server.log');
    logger = createLogger('error', { fd: fs.openSync(logFile, 'w') });
    server = await startGrpcServer({ dataSource, logger }, { address: '127.0.0.1:0', authCacheMs: 0, expirySweepSeconds: 60 });
    // Only this test's rows break it (NOT VALID: the rows already there are not checked).
    await dataSource.query(`ALTER TABLE promotional_credits ADD CONSTRAINT ${constraint} CHECK (description NOT LIKE '%${marker}%') NOT VALID`);
  });

  after(async () => {
    await dataSource.query(`ALTER TABLE promotional_credits DROP CONSTRAINT IF EXISTS ${constraint}`);
    await server?.shutdown(1_000);
    await dataSource?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('names the statement and the constraint, not the row', async () => {
    const tenant = await newTenant(dataSource);
    const client = promotionalCredits(`127.0.0.1:${server.port}`, tenant.rwKey);
    const customerId = `pii-${randomBytes(4).toString('hex')}`;
    const description = `${marker} for jane.doe@example.org`;
    const key = `secret-key-${randomBytes(6).toString('hex')}`;
    const metadata = new Metadata();
    metadata.set('idempotency-key', key);
    try {
      await expectError(client.addPromotionalCredits({ customerId, amount: 300n, currencyCode: 'USD', description }, metadata), status.INTERNAL, 'INTERNAL');
    } finally {
      client.close();
    }
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    const text = fs.readFileSync(logFile, 'utf8');
    const failed = text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as { msg: string; err?: Record<string, unknown> })
      .find((line) => line.msg === 'call failed');
    expect(failed, text).to.not.equal(undefined);
    expect(JSON.stringify(failed!.err)).to.include(constraint).and.include('23514');
    for (const secret of [customerId, 'jane.doe@example.org', key]) expect(text, secret).to.not.include(secret);
  });
});
