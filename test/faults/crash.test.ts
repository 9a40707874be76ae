import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { auditLedger } from '../../src/promotional-credits/ledger-audit';
import { spawnServer, freePort, type ChildServer } from '../support/child-server';
import { openTestDataSource, testDatabaseUrl } from '../support/database';
import { promotionalCredits } from '../support/server';
import { decodeError } from '../support/status';
import { newTenant, type TestTenant } from '../support/tenant';

interface Op {
  key: string;
  kind: 'add' | 'deduct';
  customerId: string;
  amount: bigint;
  /** 'ok' with the entry written, 'refused' for a final business error, undefined while unanswered. */
  outcome?: { kind: 'ok'; entryId: string } | { kind: 'refused'; reason: string };
}

const CUSTOMERS = ['alice', 'bob', 'carol', 'dave'];
const WORKERS = 24;

/**
 * Crash test: mixed writes with idempotency keys under sustained parallel
 * load, the server SIGKILLed mid-load (twice), restarted, every unanswered
 * call retried with its key. Then every acknowledged write is present exactly
 * once and the ledger audit passes.
 */
describe('faults: server killed mid-load', function () {
  this.timeout(300_000);
  let dataSource: DataSource;
  let tenant: TestTenant;
  let url: string;
  let port: number;
  let server: ChildServer | undefined;

  before(async () => {
    url = await testDatabaseUrl();
    dataSource = await openTestDataSource(4);
    tenant = await newTenant(dataSource);
    port = await freePort();
  });
  after(async () => {
    if (server && server.process.exitCode === null) {
      server.process.kill('SIGTERM');
      await server.exited;
    }
    await dataSource.destroy();
  });

  it('loses no acknowledged write and applies none twice', async () => {
    const ops: Op[] = [];
    let calls = 0;
    let sequence = 0;
    const client = promotionalCredits(`127.0.0.1:${port}`, tenant.rwKey);
    const send = async (op: Op): Promise<boolean> => {
      calls++;
      const md = new Metadata();
      md.set('idempotency-key', op.key);
      const request = { customerId: op.customerId, amount: op.amount, currencyCode: '', description: `crash ${op.key}`, creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: op.key };
      try {
        const res = op.kind === 'add' ? await client.addPromotionalCredits(request, md) : await client.deductPromotionalCredits(request, md);
        op.outcome = { kind: 'ok', entryId: res.promotionalCredit!.id };
        return true;
      } catch (err) {
        const e = decodeError(err as ServiceError);
        if (e.code === status.FAILED_PRECONDITION) {
          op.outcome = { kind: 'refused', reason: e.reason ?? '' };
          return true;
        }
        // UNAVAILABLE, ABORTED (key in use), CANCELLED...: no answer yet.
        return false;
      }
    };

    let running = true;
    const worker = async (w: number) => {
      while (running) {
        const op: Op = {
          key: `w${w}-${sequence++}`,
          kind: sequence % 3 === 0 ? 'deduct' : 'add',
          customerId: CUSTOMERS[sequence % CUSTOMERS.length]!,
          amount: BigInt(1 + (sequence % 50)),
        };
        ops.push(op);
        if (!(await send(op))) await new Promise((r) => setTimeout(r, 20));
      }
    };

    const kills = 2;
    server = await spawnServer(url, port);
    const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
    for (let k = 0; k < kills; k++) {
      await new Promise((r) => setTimeout(r, 1500));
      server.process.kill('SIGKILL');
      await server.exited;
      await new Promise((r) => setTimeout(r, 300)); // calls fail while it is down
      server = await spawnServer(url, port);
    }
    await new Promise((r) => setTimeout(r, 500));
    running = false;
    await Promise.all(workers);

    // Retry every call that got no answer, with its own key, until it has one.
    const unanswered = ops.filter((op) => op.outcome === undefined);
    let retries = 0;
    for (let round = 0; round < 50 && ops.some((op) => op.outcome === undefined); round++) {
      await Promise.all(
        ops.filter((op) => op.outcome === undefined).map(async (op) => {
          retries++;
          await send(op);
        }),
      );
      if (ops.some((op) => op.outcome === undefined)) await new Promise((r) => setTimeout(r, 100));
    }
    client.close();
    expect(ops.filter((op) => op.outcome === undefined), 'every call answered after retries').to.have.length(0);

    const acknowledged = ops.filter((op) => op.outcome?.kind === 'ok');
    const entries: Array<{ id: string; reference: string }> = await dataSource.query(
      'SELECT id, reference FROM promotional_credits WHERE tenant_id = $1',
      [tenant.id],
    );
    // Exactly once: one entry per acknowledged key, none for the others.
    expect(entries.length, 'ledger entries = acknowledged writes').to.equal(acknowledged.length);
    const byReference = new Map(entries.map((e) => [e.reference, e.id]));
    for (const op of acknowledged) {
      if (op.outcome?.kind !== 'ok') continue;
      expect(byReference.get(op.key), `entry of ${op.key}`).to.equal(op.outcome.entryId);
    }
    for (const customerId of CUSTOMERS) {
      const expected = acknowledged
        .filter((op) => op.customerId === customerId)
        .reduce((sum, op) => sum + (op.kind === 'add' ? op.amount : -op.amount), 0n);
      const rows: Array<{ amount: string }> = await dataSource.query(
        'SELECT amount FROM promotional_credit_balances WHERE tenant_id = $1 AND customer_id = $2',
        [tenant.id, customerId],
      );
      expect(BigInt(rows[0]?.amount ?? '0'), `balance of ${customerId}`).to.equal(expected);
    }
    expect(await auditLedger(dataSource.manager, { tenantId: tenant.id })).to.deep.equal([]);
    console.log(
      `      crash test: ${calls} calls, ${kills} kills, ${unanswered.length} unanswered calls retried with ${retries} attempts, ` +
        `${acknowledged.length} writes acknowledged, ${ops.length - acknowledged.length} refused, 0 lost, 0 duplicated`,
    );
  });
});
