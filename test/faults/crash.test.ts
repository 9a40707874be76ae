import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { ledgerProblemsOf } from '../support/ledger';
import type { DataSource } from 'typeorm';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { allRedemptions, redeemRequest } from '../coupons/fixtures';
import { issueRequest, lifetime, redeemCreditRequest } from '../credits/fixtures';
import { spawnServer, freePort, type ChildServer } from '../support/child-server';
import { openTestDataSource, testDatabaseUrl } from '../support/database';
import { coupons, credits, promotionalCredits } from '../support/server';
import { decodeError } from '../support/status';
import { newTenant, type TestTenant } from '../support/tenant';

interface Op {
  key: string;
  /** add/deduct: a ledger entry; redeem-coupon: RedeemCoupon; redeem-credit: RedeemCustomerCredit of the LIFETIME credit. */
  kind: 'add' | 'deduct' | 'redeem-coupon' | 'redeem-credit';
  customerId: string;
  amount: bigint;
  /** 'ok' with the id of the entry or redemption written, 'refused' for a final business error, undefined while unanswered. */
  outcome?: { kind: 'ok'; id: string } | { kind: 'refused'; reason: string };
}

const CUSTOMERS = ['alice', 'bob', 'carol', 'dave'];
const WORKERS = 24;
/** The coupon's max_redemptions; RedeemCoupon and RedeemCustomerCredit both count toward it. */
const MAX_REDEMPTIONS = 40;
/** The workers start one redemption per this many ms (about MAX_REDEMPTIONS over the load), besides the bursts at each kill. */
const REDEMPTION_EVERY_MS = 150;
/** Redemptions fired just before each SIGKILL, so some are in flight when the server dies. */
const BURST = 8;
const CREDIT_OWNER = 'member-1';

/**
 * Crash test: mixed writes with idempotency keys under sustained parallel
 * load (ledger adds and deducts, coupon redemptions by different customers
 * and redemptions of a LIFETIME customer credit, both counting toward one
 * coupon's max_redemptions), the server SIGKILLed mid-load (twice, with a
 * burst of redemptions in flight), restarted, every unanswered call retried
 * with its key. Then every acknowledged write is present exactly once, the
 * coupon's cap held and the ledger audit passes.
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
    const couponClient = coupons(`127.0.0.1:${port}`, tenant.rwKey);
    const creditClient = credits(`127.0.0.1:${port}`, tenant.rwKey);
    let coupon = { id: '', code: '' };
    let creditId = '';
    const send = async (op: Op): Promise<boolean> => {
      calls++;
      const md = new Metadata();
      md.set('idempotency-key', op.key);
      const request = { customerId: op.customerId, amount: op.amount, currencyCode: '', description: `crash ${op.key}`, creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: op.key };
      const total = { amount: op.amount * 100n, currencyCode: 'USD' };
      try {
        switch (op.kind) {
          case 'add':
            op.outcome = { kind: 'ok', id: (await client.addPromotionalCredits(request, md)).promotionalCredit!.id };
            break;
          case 'deduct':
            op.outcome = { kind: 'ok', id: (await client.deductPromotionalCredits(request, md)).promotionalCredit!.id };
            break;
          case 'redeem-coupon':
            op.outcome = { kind: 'ok', id: (await couponClient.redeemCoupon(redeemRequest(coupon.code, op.customerId, { amount: total }), md)).redemption!.id };
            break;
          case 'redeem-credit':
            op.outcome = {
              kind: 'ok',
              id: (await creditClient.redeemCustomerCredit(redeemCreditRequest(op.customerId, creditId, { amount: total }), md)).redemption!.id,
            };
            break;
        }
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

    let redemptions = 0;
    const redemptionOp = (key: string): Op => {
      const n = redemptions++;
      return n % 2 === 0
        ? { key, kind: 'redeem-coupon', customerId: `shopper-${n}`, amount: BigInt(1 + (n % 50)) }
        : { key, kind: 'redeem-credit', customerId: CREDIT_OWNER, amount: BigInt(1 + (n % 50)) };
    };
    let nextRedemptionAt = 0;
    let running = true;
    const worker = async (w: number) => {
      while (running) {
        const key = `w${w}-${sequence++}`;
        let op: Op;
        if (Date.now() >= nextRedemptionAt) {
          nextRedemptionAt = Date.now() + REDEMPTION_EVERY_MS;
          op = redemptionOp(key);
        } else {
          op = { key, kind: sequence % 3 === 0 ? 'deduct' : 'add', customerId: CUSTOMERS[sequence % CUSTOMERS.length]!, amount: BigInt(1 + (sequence % 50)) };
        }
        ops.push(op);
        if (!(await send(op))) await new Promise((r) => setTimeout(r, 20));
      }
    };

    const kills = 2;
    server = await spawnServer(url, port);
    coupon = (await couponClient.createCoupon(lifetime({ maxRedemptions: MAX_REDEMPTIONS }))).coupon!;
    creditId = (await creditClient.createCustomerCredit(issueRequest(coupon.id, CREDIT_OWNER))).credit!.id;
    const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
    const bursts: Array<Promise<boolean>> = [];
    for (let k = 0; k < kills; k++) {
      await new Promise((r) => setTimeout(r, 1500));
      // A burst of redemptions, then the kill while they are on their way or being committed.
      for (let b = 0; b < BURST; b++) {
        const op = redemptionOp(`burst${k}-${b}`);
        ops.push(op);
        bursts.push(send(op));
      }
      await new Promise((r) => setTimeout(r, 5 + 10 * k));
      server.process.kill('SIGKILL');
      await server.exited;
      await new Promise((r) => setTimeout(r, 300)); // calls fail while it is down
      server = await spawnServer(url, port);
    }
    await new Promise((r) => setTimeout(r, 500));
    running = false;
    await Promise.all([...workers, ...bursts]);

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
    expect(ops.filter((op) => op.outcome === undefined), 'every call answered after retries').to.have.length(0);

    const ledgerOps = ops.filter((op) => op.kind === 'add' || op.kind === 'deduct');
    const acknowledged = ledgerOps.filter((op) => op.outcome?.kind === 'ok');
    const entries: Array<{ id: string; reference: string }> = await dataSource.query(
      'SELECT id, reference FROM promotional_credits WHERE tenant_id = $1',
      [tenant.id],
    );
    // Exactly once: one entry per acknowledged key, none for the others.
    expect(entries.length, 'ledger entries = acknowledged writes').to.equal(acknowledged.length);
    const byReference = new Map(entries.map((e) => [e.reference, e.id]));
    for (const op of acknowledged) {
      if (op.outcome?.kind !== 'ok') continue;
      expect(byReference.get(op.key), `entry of ${op.key}`).to.equal(op.outcome.id);
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
    expect(await ledgerProblemsOf(dataSource.manager, tenant.id)).to.deep.equal([]);

    // Redemptions: every acknowledged one present exactly once (by id), none
    // besides them, and the coupon's cap never exceeded.
    const redemptionOps = ops.filter((op) => op.kind === 'redeem-coupon' || op.kind === 'redeem-credit');
    const redeemed = redemptionOps.filter((op) => op.outcome?.kind === 'ok');
    const refusedReasons = new Set(redemptionOps.flatMap((op) => (op.outcome?.kind === 'refused' ? [op.outcome.reason] : [])));
    expect([...refusedReasons].filter((r) => r !== 'COUPON_MAX_REDEMPTIONS_REACHED'), 'redemptions are refused only at the cap').to.deep.equal([]);
    const stored = (await couponClient.getCoupon({ id: coupon.id })).coupon!;
    expect(stored.redemptionCount, 'coupon redemption_count = acknowledged redemptions').to.equal(BigInt(redeemed.length));
    expect(redeemed.length, 'the cap held').to.be.at.most(MAX_REDEMPTIONS);
    if (refusedReasons.size > 0) expect(redeemed.length, 'refused at the cap only once it was reached').to.equal(MAX_REDEMPTIONS);
    const listed = await allRedemptions(couponClient, coupon.id);
    const idOf = (op: Op) => (op.outcome?.kind === 'ok' ? op.outcome.id : '');
    expect(listed.map((r) => r.id).sort(), 'listed redemptions = acknowledged ones, by id').to.deep.equal(redeemed.map(idOf).sort());
    const customerOf = new Map(redeemed.map((op) => [idOf(op), op.customerId]));
    for (const r of listed) expect(r.customerId, `customer of redemption ${r.id}`).to.equal(customerOf.get(r.id));
    const creditRedeemed = redeemed.filter((op) => op.kind === 'redeem-credit');
    const credit = (await creditClient.getCustomerCredit({ customerId: CREDIT_OWNER, creditId })).credit!;
    expect(credit.redemptionCount, 'credit redemption_count = acknowledged credit redemptions').to.equal(BigInt(creditRedeemed.length));
    const links: Array<{ redemption_id: string }> = await dataSource.query(
      'SELECT redemption_id FROM customer_credit_redemptions WHERE tenant_id = $1 AND credit_id = $2',
      [tenant.id, creditId],
    );
    expect(links.map((l) => l.redemption_id).sort(), "the credit's redemptions = acknowledged ones").to.deep.equal(creditRedeemed.map(idOf).sort());
    client.close();
    couponClient.close();
    creditClient.close();

    const redemptionsRetried = unanswered.filter((op) => op.kind === 'redeem-coupon' || op.kind === 'redeem-credit').length;
    console.log(
      `      crash test: ${calls} calls, ${kills} kills, ${unanswered.length} unanswered calls retried with ${retries} attempts, ` +
        `${acknowledged.length} writes acknowledged, ${ledgerOps.length - acknowledged.length} refused; ` +
        `redemptions: ${redemptionOps.length} calls (${kills * BURST} fired at the kills, ${redemptionsRetried} unanswered and retried), ` +
        `${redeemed.length - creditRedeemed.length} coupon + ${creditRedeemed.length} credit acknowledged = redemption_count ${stored.redemptionCount} ` +
        `of max ${MAX_REDEMPTIONS}, ${redemptionOps.length - redeemed.length} refused at the cap; 0 lost, 0 duplicated`,
    );
  });
});
