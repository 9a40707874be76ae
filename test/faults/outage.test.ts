import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ledgerProblemsOf } from '../support/ledger';
import type { DataSource } from 'typeorm';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { startGrpcServer, type GrpcServer } from '../../src/grpc/server';
import { createLogger } from '../../src/logger';
import { openOwnDatabase, type OwnDatabase } from '../support/own-database';
import { promotionalCredits } from '../support/server';
import { eventsClient, storedEventIds } from '../support/events';
import { decodeError } from '../support/status';
import { newTenant } from '../support/tenant';

/**
 * Database outage: PostgreSQL is stopped under load and started again. Calls
 * fail with UNAVAILABLE (never INTERNAL, never a hang past their deadline)
 * and the same server process serves again once the database is back.
 * Always uses an embedded PostgreSQL of its own, since it must stop it.
 */
describe('faults: database outage', function () {
  this.timeout(300_000);
  let own: OwnDatabase;
  let dataSource: DataSource;
  let grpc: GrpcServer;

  before(async () => {
    own = await openOwnDatabase('outage', { poolSize: 8, connectTimeoutMs: 1000 });
    dataSource = own.dataSource;
    grpc = await startGrpcServer({ dataSource, logger: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent') }, { address: '127.0.0.1:0' });
  });
  after(async () => {
    await grpc?.shutdown(1000);
    await own?.close();
  });

  it('answers UNAVAILABLE while PostgreSQL is down and recovers without a restart', async () => {
    const tenant = await newTenant(dataSource);
    const client = promotionalCredits(`127.0.0.1:${grpc.port}`, tenant.rwKey);
    const DEADLINE_MS = 4000;
    type Op = { key: string; amount: bigint; ok?: boolean };
    const ops: Op[] = [];
    const codes = { beforeStop: new Map<string, number>(), duringOutage: new Map<string, number>(), afterStart: new Map<string, number>() };
    let phase: keyof typeof codes = 'beforeStop';
    let slowest = 0;
    let n = 0;
    const send = async (op: Op) => {
      const md = new Metadata();
      md.set('idempotency-key', op.key);
      const started = Date.now();
      let code = 'OK';
      try {
        await client.addPromotionalCredits(
          { customerId: 'outage', amount: op.amount, currencyCode: '', description: 'outage test', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: op.key },
          md,
        );
        op.ok = true;
      } catch (err) {
        const e = decodeError(err as ServiceError);
        code = status[e.code];
        if (e.code === status.UNAVAILABLE) expect(e.reason, e.message).to.equal('DATABASE_UNAVAILABLE');
      }
      slowest = Math.max(slowest, Date.now() - started);
      codes[phase].set(code, (codes[phase].get(code) ?? 0) + 1);
    };
    let running = true;
    const workers = Array.from({ length: 8 }, async () => {
      while (running) {
        const op: Op = { key: `o-${n++}`, amount: 10n };
        ops.push(op);
        await send(op);
        if (!op.ok) await new Promise((r) => setTimeout(r, 50));
      }
    });

    await new Promise((r) => setTimeout(r, 1000));
    phase = 'duringOutage';
    await own.stop();
    await new Promise((r) => setTimeout(r, 3000));
    await own.start();
    phase = 'afterStart';
    const recoveredBy = Date.now() + 30_000;
    while (Date.now() < recoveredBy && (codes.afterStart.get('OK') ?? 0) < 20) await new Promise((r) => setTimeout(r, 100));
    running = false;
    await Promise.all(workers);

    expect(codes.beforeStop.get('OK') ?? 0, 'served before the outage').to.be.greaterThan(0);
    expect([...codes.duringOutage.keys()].filter((c) => c !== 'OK' && c !== 'UNAVAILABLE'), 'only UNAVAILABLE during the outage').to.deep.equal([]);
    expect(codes.duringOutage.get('UNAVAILABLE') ?? 0, 'UNAVAILABLE seen').to.be.greaterThan(0);
    expect(codes.afterStart.get('OK') ?? 0, 'serves again after the database is back').to.be.at.least(20);
    // No call waited anywhere near a client's deadline: the database being down is answered at once.
    expect(slowest, 'slowest call (ms)').to.be.lessThan(DEADLINE_MS);

    // Retry what failed, with its key; then everything acknowledged is there exactly once.
    for (const op of ops.filter((o) => !o.ok)) await send(op);
    client.close();
    expect(ops.filter((o) => !o.ok)).to.have.length(0);
    const [{ count, total }]: Array<{ count: string; total: string }> = await dataSource.query(
      'SELECT count(*) AS count, coalesce(sum(amount), 0) AS total FROM promotional_credits WHERE tenant_id = $1',
      [tenant.id],
    );
    expect(Number(count)).to.equal(ops.length);
    expect(BigInt(total)).to.equal(10n * BigInt(ops.length));
    expect(await ledgerProblemsOf(dataSource.manager, tenant.id)).to.deep.equal([]);
    console.log(
      `      outage test: ${ops.length} writes; before ${JSON.stringify(Object.fromEntries(codes.beforeStop))}, ` +
        `during ${JSON.stringify(Object.fromEntries(codes.duringOutage))}, after ${JSON.stringify(Object.fromEntries(codes.afterStart))}; slowest call ${slowest} ms`,
    );
  });

  it('keeps an event stream open through the outage and goes on with the events committed once the database is back', async () => {
    const tenant = await newTenant(dataSource);
    const address = `127.0.0.1:${grpc.port}`;
    const client = promotionalCredits(address, tenant.rwKey);
    const events = eventsClient(address, tenant.readKey);
    const stream = events.stream();
    const add = (customerId: string) =>
      client.addPromotionalCredits({ customerId, amount: 1n, currencyCode: '', description: 'outage stream', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' });
    try {
      await add('before');
      await stream.until((got) => got.length === 1, 1000, 'the event before the outage');
      await own.stop();
      await new Promise((r) => setTimeout(r, 2000));
      await own.start();
      // The server serves again by itself (see the test above); the stream needs no new call.
      for (let ok = false; !ok; ) ok = await add('after').then(() => true, () => new Promise<boolean>((r) => setTimeout(() => r(false), 200)));
      await stream.until((got) => got.length === 2, 30_000, 'the event after the outage'); // a hang guard: the listener reconnects with backoff
      expect(stream.ended, 'the stream stayed open').to.equal(false);
      expect(stream.events.map((e) => e.id)).to.deep.equal(await storedEventIds(dataSource, tenant.id));
    } finally {
      stream.cancel();
      events.close();
      client.close();
    }
  });
});
