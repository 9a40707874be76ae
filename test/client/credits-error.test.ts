import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { createCreditsClient } from '../../client/src';
import { toCreditsError } from '../../client/src/credits-error';
import { Any } from '../../gen/google/protobuf/any';
import { BadRequest, ErrorInfo } from '../../gen/google/rpc/error_details';
import { Status } from '../../gen/google/rpc/status';
import { rejection, useCreditsClient } from './fixtures';

function serviceError(code: status, details: string, statusDetails?: Uint8Array): ServiceError {
  const metadata = new Metadata();
  if (statusDetails) metadata.set('grpc-status-details-bin', Buffer.from(statusDetails));
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata });
}

describe('CreditsError', () => {
  describe('from a running server', () => {
    const t = useCreditsClient();

    it('decodes the reason and metadata of INSUFFICIENT_BALANCE', async () => {
      await t.client.promotionalCredits.addPromotionalCredits({ customerId: 'c1', amount: 500n, description: 'start' });
      const err = await rejection(t.client.promotionalCredits.deductPromotionalCredits({ customerId: 'c1', amount: 501n, description: 'too much' }));
      expect(err).to.be.instanceOf(Error);
      expect(err.name).to.equal('CreditsError');
      expect([err.code, err.codeName, err.reason, err.domain]).to.deep.equal([status.FAILED_PRECONDITION, 'FAILED_PRECONDITION', 'INSUFFICIENT_BALANCE', 'credits.v1']);
      expect(err.metadata).to.include({ balance: '500', requested: '501' });
      expect(err.fieldViolations).to.deep.equal([]);
      expect(err.method).to.equal('/credits.v1.PromotionalCreditService/DeductPromotionalCredits');
      expect(err.attempts).to.equal(1);
      expect(err.message).to.be.a('string').and.not.match(/^\d+ /);
    });

    it('lists every bad field of a VALIDATION_FAILED request', async () => {
      const err = await rejection(
        t.client.promotionalCredits.addPromotionalCredits({ customerId: 'bad id!', amount: 0n, currencyCode: 'usd', description: '' }),
      );
      expect([err.codeName, err.reason]).to.deep.equal(['INVALID_ARGUMENT', 'VALIDATION_FAILED']);
      expect(err.fieldViolations.map((v) => v.field).sort()).to.deep.equal(['amount', 'currency_code', 'customer_id', 'description']);
      for (const v of err.fieldViolations) expect(v.description).to.be.a('string').and.not.equal('');
    });

    it('decodes UNAUTHENTICATED and PERMISSION_DENIED', async () => {
      const stranger = createCreditsClient({ address: t.server.address, apiKey: 'ck_not_a_key' });
      try {
        const err = await rejection(stranger.promotionalCredits.getCustomerBalance({ customerId: 'c1' }));
        expect([err.codeName, err.reason]).to.deep.equal(['UNAUTHENTICATED', 'API_KEY_INVALID']);
      } finally {
        stranger.close();
      }
      const reader = createCreditsClient({ address: t.server.address, apiKey: t.tenant.readKey });
      try {
        const err = await rejection(reader.promotionalCredits.addPromotionalCredits({ customerId: 'c1', amount: 1n, description: 'x' }));
        expect([err.codeName, err.reason]).to.deep.equal(['PERMISSION_DENIED', 'API_KEY_SCOPE_MISSING']);
      } finally {
        reader.close();
      }
    });

    it('reports DEADLINE_EXCEEDED when the deadline passes', async () => {
      const err = await rejection(t.client.promotionalCredits.getCustomerBalance({ customerId: 'c1' }, { deadlineMs: 1 }));
      expect(err.codeName).to.equal('DEADLINE_EXCEEDED');
      expect(err.reason).to.equal(undefined);
    });
  });

  describe('decoding google.rpc.Status', () => {
    it('reads ErrorInfo and BadRequest, and skips details of other types', () => {
      const details: Any[] = [
        { typeUrl: 'type.googleapis.com/google.rpc.RetryInfo', value: Buffer.from([8, 1]) },
        {
          typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo',
          value: Buffer.from(ErrorInfo.encode({ reason: 'COUPON_EXPIRED', domain: 'credits.v1', metadata: { coupon_id: 'c-1' } }).finish()),
        },
        {
          typeUrl: 'type.googleapis.com/google.rpc.BadRequest',
          value: Buffer.from(
            BadRequest.encode({
              fieldViolations: [
                { field: 'code', description: 'must be 1..50 characters', reason: '', localizedMessage: undefined },
                { field: 'fixed_amount.amount', description: 'must be greater than 0', reason: '', localizedMessage: undefined },
              ],
            }).finish(),
          ),
        },
      ];
      const raw = Status.encode({ code: status.FAILED_PRECONDITION, message: 'The coupon expired.', details }).finish();
      const err = toCreditsError(serviceError(status.FAILED_PRECONDITION, 'The coupon expired.', raw), { method: '/x/Y', attempts: 2 });
      expect(err).to.include({ code: 9, codeName: 'FAILED_PRECONDITION', reason: 'COUPON_EXPIRED', domain: 'credits.v1', message: 'The coupon expired.', method: '/x/Y', attempts: 2 });
      expect(err.metadata).to.deep.equal({ coupon_id: 'c-1' });
      expect(err.fieldViolations).to.deep.equal([
        { field: 'code', description: 'must be 1..50 characters' },
        { field: 'fixed_amount.amount', description: 'must be greater than 0' },
      ]);
      expect(err.grpcMetadata?.get('grpc-status-details-bin')).to.have.length(1);
      expect((err.cause as ServiceError).code).to.equal(9);
    });

    it('keeps code and message when there are no details, or undecodable ones', () => {
      const bare = toCreditsError(serviceError(status.UNAVAILABLE, 'No connection established'));
      expect([bare.codeName, bare.reason, bare.message, bare.fieldViolations.length]).to.deep.equal(['UNAVAILABLE', undefined, 'No connection established', 0]);
      const garbled = toCreditsError(serviceError(status.INTERNAL, 'boom', new Uint8Array([0xff, 0xff, 0xff])));
      expect([garbled.codeName, garbled.reason, garbled.message]).to.deep.equal(['INTERNAL', undefined, 'boom']);
    });
  });
});
