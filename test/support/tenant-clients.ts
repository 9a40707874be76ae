import { coupons, credits, promotionalCredits, replicaServer, sharedServer, type CouponClient, type CreditClient, type PromotionalCreditClient, type TestServer } from './server';
import { newTenant, type TestTenant } from './tenant';

/** Promise clients of one server process, each with the tenant's read+write key ("rw-key"). */
export interface Clients {
  promotionalCredits: PromotionalCreditClient;
  coupons: CouponClient;
  credits: CreditClient;
}

/** What a suite's tests use; read it inside hooks and tests, not while the suite is declared. */
export interface TenantClients extends Clients {
  /** The shared in-process server. */
  readonly server: TestServer;
  /** A fresh tenant: every test's own (or the suite's, with per: 'suite'), so tests never see each other's data. */
  readonly tenant: TestTenant;
  /** The same clients on the replica process (a second `credits serve`), with replica: true. */
  readonly replica: Clients;
}

export interface TenantClientsOptions {
  /** The tenant's currency settings (newTenant's defaults: USD, multi-currency). */
  tenant?: { currency?: string; multiCurrency?: boolean };
  /** 'test' (the default): a new tenant for each test; 'suite': one for the whole describe. */
  per?: 'test' | 'suite';
  /** Also start the replica process, for tests that spread calls over two servers. */
  replica?: boolean;
}

const FACTORIES: { [K in keyof Clients]: (address: string, apiKey: string) => Clients[K] } = { promotionalCredits, coupons, credits };

/**
 * Registers the mocha hooks most suites share: the shared server (and the
 * replica), a fresh tenant before each test (or once, per: 'suite'), and
 * clients with its key, each made on first use and closed after the test
 * (or the suite).
 */
export function useTenantClients(options: TenantClientsOptions = {}): TenantClients {
  const state: { server?: TestServer; replicaAddress?: string; tenant?: TestTenant } = {};
  const made: Array<Map<keyof Clients, { close(): void }>> = [];

  const clientsOn = (address: () => string): Clients => {
    const open = new Map<keyof Clients, { close(): void }>();
    made.push(open);
    const clients = {} as Clients;
    for (const name of Object.keys(FACTORIES) as Array<keyof Clients>) {
      Object.defineProperty(clients, name, {
        enumerable: true,
        get: () => {
          if (!open.has(name)) open.set(name, FACTORIES[name](address(), ready(state.tenant, 'tenant').rwKey));
          return open.get(name);
        },
      });
    }
    return clients;
  };
  const closeAll = () => {
    for (const open of made) {
      for (const client of open.values()) client.close();
      open.clear();
    }
  };
  const main = clientsOn(() => ready(state.server, 'server').address);
  const replica = clientsOn(() => ready(state.replicaAddress, 'replica (useTenantClients({ replica: true }))'));

  before(async function () {
    // The replica is a process of its own: starting it takes a while on a busy machine.
    this.timeout(120_000);
    state.server = await sharedServer();
    if (options.replica) state.replicaAddress = (await replicaServer()).address;
  });
  const makeTenant = async () => {
    state.tenant = await newTenant(ready(state.server, 'server').dataSource, options.tenant);
  };
  if (options.per === 'suite') {
    before(makeTenant);
    after(closeAll);
  } else {
    beforeEach(makeTenant);
    afterEach(closeAll);
  }

  return {
    get server() {
      return ready(state.server, 'server');
    },
    get tenant() {
      return ready(state.tenant, 'tenant');
    },
    get promotionalCredits() {
      return main.promotionalCredits;
    },
    get coupons() {
      return main.coupons;
    },
    get credits() {
      return main.credits;
    },
    replica,
  };
}

function ready<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`useTenantClients: no ${what} yet; use it inside hooks and tests`);
  return value;
}
