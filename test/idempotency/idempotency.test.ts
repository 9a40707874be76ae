import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { AddPromotionalCreditsRequest, AddPromotionalCreditsResponse, CreditType, PromotionalCreditServiceClient } from '../../gen/credits/v1/promotional_credit_service';
import { IdempotencyRepository } from '../../src/idempotency/idempotency.repository';
import { finalErrorOf } from '../../src/grpc/error-status';
import { Idempotency } from '../../src/idempotency/idempotency';
import { apiKeyInterceptor, promotionalCredits } from '../support/server';
import { decodeError, expectError } from '../support/status';
import { newTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

const base = { currencyCode: '', description: 'top-up', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };

function withKey(key: string): Metadata {
  const md = new Metadata();
  md.set('idempotency-key', key);
  return md;
}

describe('idempotency keys', () => {
  const t = useTenantClients();

  it('applies the same AddPromotionalCredits sent 50 times in parallel once, and replays it byte for byte', async () => {
    const request = { ...base, customerId: 'c1', amount: 700n };
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => t.promotionalCredits.addPromotionalCredits(request, withKey('topup-1'))));
    const ok = results.filter((r): r is PromiseFulfilledResult<AddPromotionalCreditsResponse> => r.status === 'fulfilled').map((r) => r.value);
    for (const r of results) {
      if (r.status === 'rejected') {
        const err = decodeError(r.reason as ServiceError);
        expect([status[err.code], err.reason]).to.deep.equal(['ABORTED', 'IDEMPOTENCY_KEY_IN_USE']);
      }
    }
    expect(ok.length).to.be.greaterThan(0);
    const balance = await t.promotionalCredits.getCustomerBalance({ customerId: 'c1' });
    expect(balance.balance!.balances[0]!.amount).to.equal(700n);
    const page = await t.promotionalCredits.listPromotionalCredits({ pageSize: 100, pageToken: '' });
    expect(page.promotionalCredits).to.have.length(1);

    // Retries after the first completed are replays, identical to the byte.
    const replay = await t.promotionalCredits.addPromotionalCredits(request, withKey('topup-1'));
    const bytes = Buffer.from(AddPromotionalCreditsResponse.encode(replay).finish());
    for (const r of ok) expect(Buffer.from(AddPromotionalCreditsResponse.encode(r).finish()).equals(bytes)).to.equal(true);
    expect(replay.promotionalCredit!.id).to.equal(page.promotionalCredits[0]!.id);
  });

  it('marks replays with idempotent-replayed metadata', async () => {
    const request = { ...base, customerId: 'c2', amount: 5n };
    const headers: Metadata[] = [];
    const raw = new PromotionalCreditServiceClient(t.server.address, credentials.createInsecure(), { interceptors: [apiKeyInterceptor(t.tenant.rwKey)] });
    try {
      for (let i = 0; i < 2; i++) {
        await new Promise<void>((resolve, reject) => {
          const call = raw.addPromotionalCredits(AddPromotionalCreditsRequest.fromPartial(request), withKey('k-2'), (err) => (err ? reject(err) : resolve()));
          call.on('metadata', (md: Metadata) => headers.push(md));
        });
      }
    } finally {
      raw.close();
    }
    expect(headers[0]!.get('idempotent-replayed')).to.deep.equal([]);
    expect(headers[1]!.get('idempotent-replayed')).to.deep.equal(['true']);
  });

  it('refuses the same key with a different request', async () => {
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c3', amount: 100n }, withKey('k-3'));
    const err = await expectError(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c3', amount: 101n }, withKey('k-3')), status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_REUSED');
    expect(err.fields).to.have.property('idempotency-key');
    const other = await expectError(t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'c3', amount: 100n }, withKey('k-3')), status.INVALID_ARGUMENT);
    expect(other.reason).to.equal('IDEMPOTENCY_KEY_REUSED');
    const balance = await t.promotionalCredits.getCustomerBalance({ customerId: 'c3' });
    expect(balance.balance!.balances[0]!.amount).to.equal(100n);
  });

  it('replays a retry whose metadata entries come in another order (map order on the wire is the sender\'s)', async () => {
    const first = await t.promotionalCredits.addPromotionalCredits(
      { ...base, customerId: 'c-map', amount: 100n, metadata: { order: 'o-1', channel: 'web', zone: 'eu' } },
      withKey('k-map'),
    );
    const retry = await t.promotionalCredits.addPromotionalCredits(
      { ...base, customerId: 'c-map', amount: 100n, metadata: { zone: 'eu', order: 'o-1', channel: 'web' } },
      withKey('k-map'),
    );
    expect(retry).to.deep.equal(first);
    const other = { ...base, customerId: 'c-map', amount: 100n, metadata: { zone: 'eu', order: 'o-2', channel: 'web' } };
    await expectError(t.promotionalCredits.addPromotionalCredits(other, withKey('k-map')), status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_REUSED');
    const balance = await t.promotionalCredits.getCustomerBalance({ customerId: 'c-map' });
    expect(balance.balance!.balances[0]!.amount).to.equal(100n);
  });

  it('stores a final error and replays it without running the request again', async () => {
    const deduct = { ...base, customerId: 'c4', amount: 50n };
    const first = await expectError(t.promotionalCredits.deductPromotionalCredits(deduct, withKey('k-4')), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c4', amount: 500n });
    // The balance now covers it, but the key's outcome is settled.
    const second = await expectError(t.promotionalCredits.deductPromotionalCredits(deduct, withKey('k-4')), status.FAILED_PRECONDITION, 'INSUFFICIENT_BALANCE');
    expect(second).to.deep.equal(first);
    const balance = await t.promotionalCredits.getCustomerBalance({ customerId: 'c4' });
    expect(balance.balance!.balances[0]!.amount).to.equal(500n);
  });

  it('keeps keys per tenant', async () => {
    const other = await newTenant(t.server.dataSource);
    const otherClient = promotionalCredits(t.server.address, other.rwKey);
    try {
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c5', amount: 1n }, withKey('shared'));
      const res = await otherClient.addPromotionalCredits({ ...base, customerId: 'c5', amount: 2n }, withKey('shared'));
      expect(res.promotionalCredit!.amount).to.equal(2n);
    } finally {
      otherClient.close();
    }
  });

  it('rejects malformed keys', async () => {
    const err = await expectError(t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c6', amount: 1n }, withKey('x'.repeat(256))), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');
    expect(err.fields).to.have.property('idempotency-key');
  });

  it('prunes expired keys, after which the key is free again', async () => {
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c7', amount: 1n }, withKey('old'));
    await t.server.dataSource.query(`UPDATE idempotency_keys SET expire_time = now() - interval '1 second' WHERE tenant_id = $1`, [t.tenant.id]);
    const pruned = await new Idempotency(t.server.dataSource, 168, finalErrorOf).prune();
    expect(pruned).to.be.greaterThan(0);
    expect(await new IdempotencyRepository(t.server.dataSource.manager).find(t.tenant.id, 'old')).to.equal(undefined);
    const again = await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'c7', amount: 3n }, withKey('old'));
    expect(again.promotionalCredit!.amount).to.equal(3n);
  });
});
