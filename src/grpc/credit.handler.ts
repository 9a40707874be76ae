import type { CreditServiceServer } from '../../gen/credits/v1/credit_service';
import type { CreditsService } from '../credits/credits.service';
import { couponRedemptionToProto } from './coupon.mapper';
import { creditDraftFromProto, creditEventSnapshots as events, creditListInputFromProto, creditToProto, redeemCreditInputFromProto } from './credit.mapper';
import { pageToProto } from './page.mapper';
import type { Rpc } from './rpc';

/** CreditService: translation between proto and the use cases, nothing else. */
export function creditHandlers(service: CreditsService, rpc: Rpc): CreditServiceServer {
  return {
    createCustomerCredit: rpc.write(async (request, ctx) => ({
      credit: creditToProto(
        await service.create(ctx.principal, { couponId: request.couponId, validateOnly: request.validateOnly, ...creditDraftFromProto(request) }, ctx.run, events),
      ),
    })),
    batchCreateCustomerCredits: rpc.write(async (request, ctx) => {
      const credits = await service.batchCreate(
        ctx.principal,
        { couponId: request.couponId, drafts: request.credits.map(creditDraftFromProto), validateOnly: request.validateOnly },
        ctx.run,
        events,
      );
      return { credits: credits.map(creditToProto) };
    }),
    getCustomerCredit: rpc.read(async (request, ctx) => ({
      credit: creditToProto(await service.get(ctx.principal, { customerId: request.customerId, creditId: request.creditId })),
    })),
    listCustomerCredits: rpc.read(async (request, ctx) =>
      pageToProto('credits', await service.list(ctx.principal, creditListInputFromProto(request)), creditToProto),
    ),
    revokeCustomerCredit: rpc.write(async (request, ctx) => ({
      credit: creditToProto(
        await service.revoke(ctx.principal, { customerId: request.customerId, creditId: request.creditId, validateOnly: request.validateOnly }, ctx.run, events),
      ),
    })),
    redeemCustomerCredit: rpc.write(async (request, ctx) => {
      const outcome = await service.redeem(ctx.principal, redeemCreditInputFromProto(request), ctx.run);
      return { credit: creditToProto(outcome.credit), redemption: couponRedemptionToProto(outcome.redemption), revenue: outcome.revenue };
    }, { sharedTransaction: true }),
  };
}
