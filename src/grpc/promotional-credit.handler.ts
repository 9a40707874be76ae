import type { PromotionalCreditServiceServer } from '../../gen/credits/v1/promotional_credit_service';
import type { BalanceChangeResult, PromotionalCreditsService } from '../promotional-credits/promotional-credits.service';
import {
  balanceChangeFromProto,
  customerBalanceToProto,
  listInputFromProto,
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
  return {
    // Each balance change is one coalesced write computed in SQL from the
    // locked balance, and a refused change writes nothing, so keyed calls may
    // share a transaction (see Idempotency.execute).
    addPromotionalCredits: rpc.write(
      async (request, ctx) => changed(request.customerId, await service.add(ctx.principal, balanceChangeFromProto(request), ctx.run)),
      { sharedTransaction: true },
    ),
    deductPromotionalCredits: rpc.write(
      async (request, ctx) => changed(request.customerId, await service.deduct(ctx.principal, balanceChangeFromProto(request), ctx.run)),
      { sharedTransaction: true },
    ),
    setPromotionalCredits: rpc.write(
      async (request, ctx) => changed(request.customerId, await service.set(ctx.principal, balanceChangeFromProto(request), ctx.run)),
      { sharedTransaction: true },
    ),
    getPromotionalCredit: rpc.read(async (request, ctx) => ({
      promotionalCredit: promotionalCreditToProto(await service.get(ctx.principal, request.id)),
    })),
    listPromotionalCredits: rpc.read(async (request, ctx) =>
      pageToProto('promotionalCredits', await service.list(ctx.principal, listInputFromProto(request)), promotionalCreditToProto),
    ),
    getCustomerBalance: rpc.read(async (request, ctx) => ({
      balance: customerBalanceToProto(request.customerId, await service.balances(ctx.principal, request.customerId)),
    })),
  };
}
