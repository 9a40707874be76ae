import type { PromotionalCreditServiceServer } from '../../gen/credits/v1/promotional_credit_service';
import type { BalanceChangeResult, HoldResult, PromotionalCreditsService } from '../promotional-credits/promotional-credits.service';
import {
  balanceChangeFromProto,
  customerBalanceToProto,
  holdStatusFromProto,
  holdToProto,
  listInputFromProto,
  lotToProto,
  promotionalCreditMessage,
  promotionalCreditToProto,
} from './promotional-credit.mapper';
import { pageToProto } from './page.mapper';
import type { Rpc } from './rpc';

/** PromotionalCreditService: translation between proto and the use cases, nothing else. */
export function promotionalCreditHandlers(service: PromotionalCreditsService, rpc: Rpc): PromotionalCreditServiceServer {
  const changed = (customerId: string, result: BalanceChangeResult) => ({
    promotionalCredit: result.entry ? promotionalCreditToProto(result.entry) : undefined,
    balance: customerBalanceToProto(customerId, result.balances),
  });
  const held = (result: HoldResult) => ({
    hold: holdToProto(result.hold),
    promotionalCredit: result.entry ? promotionalCreditToProto(result.entry) : undefined,
    balance: customerBalanceToProto(result.hold.hold.customerId, result.balances),
  });
  // Every balance change is one submitted write computed in SQL from the
  // locked balance, and a refused change writes nothing, so keyed calls may
  // share a transaction (see Idempotency.execute).
  const shared = { sharedTransaction: true };
  return {
    addPromotionalCredits: rpc.write(
      async (request, ctx) => changed(request.customerId, await service.add(ctx.principal, balanceChangeFromProto(request), ctx.run)),
      shared,
    ),
    deductPromotionalCredits: rpc.write(
      async (request, ctx) => changed(request.customerId, await service.deduct(ctx.principal, balanceChangeFromProto(request), ctx.run)),
      shared,
    ),
    setPromotionalCredits: rpc.write(
      async (request, ctx) => changed(request.customerId, await service.set(ctx.principal, balanceChangeFromProto(request), ctx.run)),
      shared,
    ),
    getPromotionalCredit: rpc.read(async (request, ctx) => ({
      promotionalCredit: promotionalCreditToProto(await service.get(ctx.principal, request.id)),
    })),
    listPromotionalCredits: rpc.read(async (request, ctx) =>
      pageToProto('promotionalCredits', await service.list(ctx.principal, listInputFromProto(request)), promotionalCreditMessage),
    ),
    getCustomerBalance: rpc.read(async (request, ctx) => ({
      balance: customerBalanceToProto(request.customerId, await service.balances(ctx.principal, request.customerId, request.asOfTime)),
    })),
    listPromotionalCreditLots: rpc.read(async (request, ctx) => pageToProto('lots', await service.listLots(ctx.principal, request), lotToProto)),
    reversePromotionalCredit: rpc.write(async (request, ctx) => {
      const result = await service.reverse(ctx.principal, request, ctx.run);
      return changed(result.entry!.customerId, result);
    }, shared),
    holdPromotionalCredits: rpc.write(async (request, ctx) => held(await service.hold(ctx.principal, request, ctx.run)), shared),
    capturePromotionalCreditHold: rpc.write(async (request, ctx) => held(await service.capture(ctx.principal, request, ctx.run)), shared),
    releasePromotionalCreditHold: rpc.write(async (request, ctx) => {
      const { promotionalCredit: _none, ...response } = held(await service.release(ctx.principal, request, ctx.run));
      return response;
    }, shared),
    getPromotionalCreditHold: rpc.read(async (request, ctx) => ({ hold: holdToProto(await service.getHold(ctx.principal, request.holdId)) })),
    listPromotionalCreditHolds: rpc.read(async (request, ctx) =>
      pageToProto('holds', await service.listHolds(ctx.principal, Object.assign({}, request, { status: holdStatusFromProto(request.status) })), holdToProto),
    ),
  };
}
