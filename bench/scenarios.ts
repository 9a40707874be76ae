/**
 * The benchmark's scenario table. One entry per measured call shape; add a
 * row to measure another RPC. Everything a run needs comes from here: the
 * method (looked up in gen/ at run time, so a service that has not landed yet
 * is skipped with a note instead of breaking the build), the request of call
 * i, what to set up before and check after, and the canonical pgbench scripts
 * when there are any.
 *
 * The same-SQL baselines are not written here: the bench records the SQL the
 * real server code sends for one call of each scenario and replays exactly
 * that (see sql-recorder.ts), so they cannot drift from the service.
 */

/** Made by the orchestrator after seeding; sent to every load generator. */
export interface BenchContext {
  apiKey: string;
  tenantId: string;
  tenantSlug: string;
  keyName: string;
  /** Values the scenario setups made (a coupon code, a coupon id, ...). */
  ids: Record<string, string>;
  /** Lists the setups made (credit ids per customer, ...). */
  lists: Record<string, string[]>;
}

/** Seeded before any scenario runs (see seed.ts). */
export const CUSTOMERS = 10_000;
export const HOT_CUSTOMER = 'hot';
/** Customers with a full history for the list scenario. */
export const HISTORY_CUSTOMERS = 100;
export const HISTORY_ENTRIES = 25;
export const customerId = (n: number): string => `c${n}`;
export const historyCustomerId = (n: number): string => `h${n}`;

/** Where a method lives in gen/: `module` under gen/, the service definition, the method and its request type. */
export interface ScenarioRpc {
  module: string;
  service: string;
  method: string;
  requestType: string;
}

/** What setups and checks may do (run in the orchestrator, before and after measuring). */
export interface SetupEnv {
  ctx: BenchContext;
  /** SQL on the bench database (not through the service). */
  sql<T = Record<string, unknown>>(text: string, values?: unknown[]): Promise<T[]>;
  /** One call through the real server code (the in-process recording server). */
  call(rpc: ScenarioRpc, request: unknown): Promise<Record<string, unknown>>;
}

export interface PgbenchScript {
  /** Row label, e.g. "pgbench 3-stmt". */
  name: string;
  /** The script; `:tenant` is set to the bench tenant's id. */
  script: string;
}

export interface Scenario {
  name: string;
  title: string;
  rpc: ScenarioRpc;
  /** Distinct requests: call i sends request(i % cycle). */
  cycle: number;
  /** Request of call i, as a plain object (fromPartial fills the rest). */
  request(i: number, ctx: BenchContext): Record<string, unknown>;
  /**
   * Request of call i in the service run's measurement window, when it
   * differs from the warm-up's (a fresh capped coupon, so that the cap is
   * reached while measured). Setup, recording, echo and replays use `request`.
   */
  measuredRequest?(i: number, ctx: BenchContext): Record<string, unknown>;
  /** ErrorInfo reasons that are expected answers (a cap reached): reported as refused, not as errors. */
  expectedRefusals?: string[];
  /**
   * The values that differ between calls (a customer id). The recorded SQL of
   * call 0 is replayed for call i with varying(0)[k] replaced by varying(i)[k].
   */
  varying(i: number, ctx: BenchContext): string[];
  /** pgbench form of the varying values: a \set line and one SQL expression per value. */
  pgbenchVarying: { set: string[]; expressions: string[] };
  /** Work units per call, when a call does more than one (credits per batch). */
  units?: { perCall: number; name: string };
  setup?(env: SetupEnv): Promise<void>;
  /** Each measured run uses up what setup made (holds to capture), as do the sample calls: set up again before every run. */
  setupEachRun?: boolean;
  /** Checks after the runs; answers the problems found. */
  check?(env: SetupEnv): Promise<string[]>;
  /** The canonical pgbench scripts of this scenario's row-lock pattern. */
  pgbench?: PgbenchScript[];
  /** Every call sends a fresh `idempotency-key` (the exactly-once path @credits/client takes by default). */
  idempotencyKeys?: boolean;
  /**
   * Runs only the service, with this server environment, against another
   * scenario's baselines; `otlpReceiver`: the servers export traces to a
   * local OTLP/HTTP receiver; `processes`: that many server processes on the
   * one database, the calls spread over them; `compareTo`: scenarios whose
   * service run this one's is also divided by (a ratio within one run).
   */
  variantOf?: { scenario: string; serverEnv: Record<string, string>; label: string; otlpReceiver?: boolean; processes?: number; compareTo?: string[] };
  /** StreamEvents consumers attached to the server while it is measured (their delivery lag is reported). */
  eventStreams?: number;
  /** Share of calls in the soak's mixed load (0 or absent: not in the soak). */
  soakWeight?: number;
}

const PROMO: Omit<ScenarioRpc, 'method' | 'requestType'> = {
  module: 'credits/v1/promotional_credit_service',
  service: 'PromotionalCreditServiceService',
};
const COUPONS: Omit<ScenarioRpc, 'method' | 'requestType'> = { module: 'credits/v1/coupon_service', service: 'CouponServiceService' };
const CREDITS: Omit<ScenarioRpc, 'method' | 'requestType'> = { module: 'credits/v1/credit_service', service: 'CreditServiceService' };

const CREDIT_TYPE_GENERAL = 1;
const COUPON_TYPE_FIXED_AMOUNT = 2;
const FREQUENCY_LIFETIME = 3;

/** A cap far above what a run reaches: every call takes the whole path (lock, every check, insert, count). */
const COUPON_CAP = 2_000_000_000;
const BATCH_SIZE = 500;

/** The measured capped coupon's redemptions so far. */
async function cappedRows(env: SetupEnv): Promise<number> {
  const [row] = await env.sql<{ rows: string }>(`SELECT count(*)::text AS rows FROM coupon_redemptions WHERE tenant_id = $1 AND coupon_id = $2`, [
    env.ctx.tenantId,
    env.ctx.ids.cappedCodeId,
  ]);
  return Number(row?.rows ?? 0);
}

/** redeem-coupon-capped: its cap, and more distinct customers than it (each redeems once at most). */
const CAPPED_MAX = 10_000;
const CAPPED_CUSTOMERS = 20_000;
const cappedCustomerId = (i: number): string => `k${i % CAPPED_CUSTOMERS}`;

const roundRobinCustomer = { set: [`\\set n random(0, ${CUSTOMERS - 1})`], expressions: [`('c' || :n::text)`] };

/**
 * The canonical pgbench scripts write to copies of the ledger's two tables
 * (same columns, defaults, constraints and indexes; see copyLedgerForPgbench):
 * their plain INSERTs have no hash chain nor lots, which `credits verify`
 * would rightly report as a broken ledger in the real tables.
 */
const PGBENCH_TABLES = `
CREATE TABLE IF NOT EXISTS bench_pgbench_balances (LIKE promotional_credit_balances INCLUDING ALL);
CREATE TABLE IF NOT EXISTS bench_pgbench_credits (LIKE promotional_credits INCLUDING ALL)`;

/** Copies the tenant's balances into the pgbench tables (a setup of the scenarios with canonical scripts). */
async function copyLedgerForPgbench(env: SetupEnv): Promise<void> {
  for (const statement of PGBENCH_TABLES.split(';')) await env.sql(statement);
  await env.sql(
    `INSERT INTO bench_pgbench_balances SELECT * FROM promotional_credit_balances WHERE tenant_id = $1 ON CONFLICT DO NOTHING`,
    [env.ctx.tenantId],
  );
  await env.sql('ANALYZE bench_pgbench_balances, bench_pgbench_credits');
}

/** The add's three statements as an application would send them: read under lock, compute, write. */
const ADD_3_STMT = `\\set n random(0, ${CUSTOMERS - 1})
BEGIN;
SELECT amount AS balance FROM bench_pgbench_balances
 WHERE tenant_id = :tenant AND customer_id = 'c' || :n::text AND currency_code = 'USD' FOR UPDATE \\gset
\\set closing :balance + 100
UPDATE bench_pgbench_balances SET amount = :closing, update_time = clock_timestamp()
 WHERE tenant_id = :tenant AND customer_id = 'c' || :n::text AND currency_code = 'USD';
INSERT INTO bench_pgbench_credits (tenant_id, customer_id, currency_code, type, amount, description, credit_type, reference, closing_balance, done_by)
VALUES (:tenant, 'c' || :n::text, 'USD', 'INCREMENT', 100, 'pgbench add', 'GENERAL', '', :closing, 'pgbench');
END;
`;

/** The same as one guarded statement: the UPDATE … RETURNING feeds the INSERT in a CTE, the lock lasts one round trip. */
const ADD_1_STMT = `\\set n random(0, ${CUSTOMERS - 1})
WITH balance AS (
  UPDATE bench_pgbench_balances SET amount = amount + 100, update_time = clock_timestamp()
   WHERE tenant_id = :tenant AND customer_id = 'c' || :n::text AND currency_code = 'USD' AND amount + 100 >= 0
  RETURNING amount
)
INSERT INTO bench_pgbench_credits (tenant_id, customer_id, currency_code, type, amount, description, credit_type, reference, closing_balance, done_by)
SELECT :tenant, 'c' || :n::text, 'USD', 'INCREMENT', 100, 'pgbench add', 'GENERAL', '', balance.amount, 'pgbench' FROM balance;
`;

const DEDUCT_3_STMT = `BEGIN;
SELECT amount AS balance FROM bench_pgbench_balances
 WHERE tenant_id = :tenant AND customer_id = '${HOT_CUSTOMER}' AND currency_code = 'USD' FOR UPDATE \\gset
\\if :balance >= 1
\\set closing :balance - 1
UPDATE bench_pgbench_balances SET amount = :closing, update_time = clock_timestamp()
 WHERE tenant_id = :tenant AND customer_id = '${HOT_CUSTOMER}' AND currency_code = 'USD';
INSERT INTO bench_pgbench_credits (tenant_id, customer_id, currency_code, type, amount, description, credit_type, reference, closing_balance, done_by)
VALUES (:tenant, '${HOT_CUSTOMER}', 'USD', 'DECREMENT', 1, 'pgbench deduct', 'GENERAL', '', :closing, 'pgbench');
\\endif
END;
`;

const DEDUCT_1_STMT = `WITH balance AS (
  UPDATE bench_pgbench_balances SET amount = amount - 1, update_time = clock_timestamp()
   WHERE tenant_id = :tenant AND customer_id = '${HOT_CUSTOMER}' AND currency_code = 'USD' AND amount - 1 >= 0
  RETURNING amount
)
INSERT INTO bench_pgbench_credits (tenant_id, customer_id, currency_code, type, amount, description, credit_type, reference, closing_balance, done_by)
SELECT :tenant, '${HOT_CUSTOMER}', 'USD', 'DECREMENT', 1, 'pgbench deduct', 'GENERAL', '', balance.amount, 'pgbench' FROM balance;
`;

const addRequest = (i: number): Record<string, unknown> => ({
  customerId: customerId(i % CUSTOMERS),
  amount: 100n,
  currencyCode: 'USD',
  description: 'bench add',
  creditType: CREDIT_TYPE_GENERAL,
});

/** The AddPromotionalCredits call of `add` and of its variants. */
const ADD_CALL = {
  rpc: { ...PROMO, method: 'addPromotionalCredits', requestType: 'AddPromotionalCreditsRequest' },
  cycle: CUSTOMERS,
  request: addRequest,
  varying: (i: number) => [customerId(i % CUSTOMERS)],
  pgbenchVarying: roundRobinCustomer,
};

/** An Add that opens a lot expiring in 90 days. */
const NINETY_DAYS_MS = 90 * 86_400_000;

/** Customers of deduct-lots, each holding LOTS_EACH open lots of which the soonest-expiring is drawn first. */
export const LOT_CUSTOMERS = 1_000;
export const LOTS_EACH = 100;
export const lotCustomerId = (n: number): string => `l${n}`;

/** Holds made before capture runs: one per call it can make (a hold is captured once). */
const CAPTURE_HOLDS = 100_000;

/** `promotional_credit_apply` items of the bench tenant, in statements of 2,000 (seeding through the write path). */
async function applyInChunks(env: SetupEnv, items: Array<Record<string, unknown>>): Promise<Array<Record<string, unknown>>> {
  const rows: Array<Record<string, unknown>> = [];
  for (let start = 0; start < items.length; start += 2000) {
    rows.push(...(await env.sql(`SELECT * FROM promotional_credit_apply($1::jsonb)`, [JSON.stringify(items.slice(start, start + 2000))])));
  }
  return rows;
}

/** Of the bench tenant's holds `ids`, those still active, in the given order. */
async function stillActive(env: SetupEnv, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const rows = await env.sql(
    `SELECT h.id FROM unnest($2::uuid[]) WITH ORDINALITY AS u (id, n)
       JOIN promotional_credit_holds AS h ON h.tenant_id = $1 AND h.id = u.id
      WHERE h.status = 'ACTIVE'
      ORDER BY u.n`,
    [env.ctx.tenantId, ids],
  );
  return rows.map((r) => r.id as string);
}

const writeItem = (env: SetupEnv, op: string, customer: string, amount: bigint, extra: Record<string, unknown> = {}) => ({
  op,
  tenant_id: env.ctx.tenantId,
  customer_id: customer,
  currency_code: 'USD',
  amount: amount.toString(),
  description: `bench ${op.toLowerCase()}`,
  credit_type: 'GENERAL',
  reference: '',
  done_by: env.ctx.keyName,
  with_others: false,
  ...extra,
});

export const SCENARIOS: Scenario[] = [
  {
    name: 'add',
    title: 'AddPromotionalCredits, 10,000 customers (uncontended)',
    ...ADD_CALL,
    setup: copyLedgerForPgbench,
    pgbench: [
      { name: 'pgbench 3-stmt', script: ADD_3_STMT },
      { name: 'pgbench 1-stmt', script: ADD_1_STMT },
    ],
    soakWeight: 30,
  },
  {
    name: 'add-metrics-off',
    title: 'AddPromotionalCredits, server with CREDITS_METRICS_ADDRESS=off (what the metrics cost)',
    ...ADD_CALL,
    variantOf: { scenario: 'add', serverEnv: { CREDITS_METRICS_ADDRESS: 'off' }, label: 'metrics off' },
  },
  {
    name: 'add-otlp',
    title: 'AddPromotionalCredits, every call traced and exported to a local OTLP/HTTP receiver (what tracing costs)',
    ...ADD_CALL,
    variantOf: { scenario: 'add', serverEnv: {}, label: 'tracing to OTLP', otlpReceiver: true },
  },
  {
    name: 'add-2-processes',
    title: 'AddPromotionalCredits over two server processes on one database (replicas)',
    ...ADD_CALL,
    variantOf: { scenario: 'add', serverEnv: {}, label: 'two processes', processes: 2 },
  },
  {
    name: 'add-log-warn',
    title: 'AddPromotionalCredits, server at LOG_LEVEL=warn (logging cost)',
    ...ADD_CALL,
    variantOf: { scenario: 'add', serverEnv: { LOG_LEVEL: 'warn' }, label: 'LOG_LEVEL=warn' },
  },
  {
    name: 'add-keyed',
    title: 'AddPromotionalCredits with an idempotency-key per call (what @credits/client sends)',
    ...ADD_CALL,
    idempotencyKeys: true,
    variantOf: { scenario: 'add', serverEnv: {}, label: 'with idempotency-key' },
    soakWeight: 10,
  },
  {
    name: 'add-expiring',
    title: 'AddPromotionalCredits with expire_time (a lot that expires in 90 days)',
    ...ADD_CALL,
    request: (i) => ({ ...addRequest(i), expireTime: new Date(Date.now() + NINETY_DAYS_MS) }),
    variantOf: { scenario: 'add', serverEnv: {}, label: 'expiring lot' },
  },
  {
    name: 'add-metadata',
    title: 'AddPromotionalCredits with 3 metadata pairs',
    ...ADD_CALL,
    request: (i) => ({ ...addRequest(i), metadata: { order_id: `o-${i}`, channel: 'web', campaign: 'bench' } }),
    variantOf: { scenario: 'add', serverEnv: {}, label: '3 metadata pairs' },
  },
  {
    name: 'deduct',
    title: 'DeductPromotionalCredits of 1, 10,000 customers (uncontended)',
    rpc: { ...PROMO, method: 'deductPromotionalCredits', requestType: 'DeductPromotionalCreditsRequest' },
    cycle: CUSTOMERS,
    request: (i) => ({ customerId: customerId(i % CUSTOMERS), amount: 1n, currencyCode: 'USD', description: 'bench deduct', creditType: CREDIT_TYPE_GENERAL }),
    varying: (i) => [customerId(i % CUSTOMERS)],
    pgbenchVarying: roundRobinCustomer,
  },
  {
    name: 'deduct-lots',
    title: `DeductPromotionalCredits of 1, ${LOT_CUSTOMERS.toLocaleString('en')} customers with ${LOTS_EACH} open lots each`,
    rpc: { ...PROMO, method: 'deductPromotionalCredits', requestType: 'DeductPromotionalCreditsRequest' },
    cycle: LOT_CUSTOMERS,
    request: (i) => ({ customerId: lotCustomerId(i % LOT_CUSTOMERS), amount: 1n, currencyCode: 'USD', description: 'bench deduct', creditType: CREDIT_TYPE_GENERAL }),
    varying: (i) => [lotCustomerId(i % LOT_CUSTOMERS)],
    pgbenchVarying: { set: [`\\set n random(0, ${LOT_CUSTOMERS - 1})`], expressions: [`('l' || :n::text)`] },
    setup: async (env) => {
      // Lots expiring from 30 to 129 days ahead (and never, for a fifth): the draw starts at the soonest.
      const items = [];
      for (let c = 0; c < LOT_CUSTOMERS; c++) {
        for (let l = 0; l < LOTS_EACH; l++) {
          const expireTime = l % 5 === 4 ? undefined : new Date(Date.now() + (30 + l) * 86_400_000).toISOString();
          items.push(writeItem(env, 'ADD', lotCustomerId(c), 1000n, expireTime ? { expire_time: expireTime } : {}));
        }
      }
      await applyInChunks(env, items);
    },
  },
  {
    name: 'hold',
    title: 'HoldPromotionalCredits of 1, 10,000 customers',
    rpc: { ...PROMO, method: 'holdPromotionalCredits', requestType: 'HoldPromotionalCreditsRequest' },
    cycle: CUSTOMERS,
    // Two days ahead, as capture's holds: with the default 15 minutes, the
    // holds of a run expired in the middle of the scenarios run 15 minutes
    // later (get-balance's rounds), whose server then swept them and read
    // those balances as of their expiry (PostgreSQL 49% busy against 7%).
    request: (i) => ({
      customerId: customerId(i % CUSTOMERS),
      amount: 1n,
      currencyCode: 'USD',
      description: 'bench hold',
      expireTime: new Date(Date.now() + 2 * 86_400_000),
    }),
    varying: (i) => [customerId(i % CUSTOMERS)],
    pgbenchVarying: roundRobinCustomer,
    variantOf: { scenario: 'deduct', serverEnv: {}, label: 'hold' },
  },
  {
    name: 'capture',
    title: `CapturePromotionalCreditHold, holds of 10,000 customers (${CAPTURE_HOLDS.toLocaleString('en')} made beforehand)`,
    rpc: { ...PROMO, method: 'capturePromotionalCreditHold', requestType: 'CapturePromotionalCreditHoldRequest' },
    cycle: CAPTURE_HOLDS,
    request: (i, ctx) => ({ holdId: ctx.lists.holdIds![i % CAPTURE_HOLDS] }),
    varying: (i, ctx) => [ctx.lists.holdIds![i % CAPTURE_HOLDS]!],
    pgbenchVarying: { set: [], expressions: [] },
    // Tops the set up to CAPTURE_HOLDS active holds: the ones the sample
    // calls and earlier runs left stay in it (in their order), and only what
    // they captured is made again. Made afresh each time, the holds a run
    // did not reach stayed active for the rest of the session (200,000 by
    // the first capture run), so hold and capture rounds met more of them
    // each time.
    setup: async (env) => {
      const kept = await stillActive(env, env.ctx.lists.holdIds ?? []);
      const expireTime = new Date(Date.now() + 2 * 86_400_000).toISOString();
      const rows = await applyInChunks(
        env,
        Array.from({ length: CAPTURE_HOLDS - kept.length }, (_, k) =>
          writeItem(env, 'HOLD', customerId((kept.length + k) % CUSTOMERS), 1n, { expire_time: expireTime }),
        ),
      );
      env.ctx.lists.holdIds = [...kept, ...rows.map((r) => (r.hold as { id: string }).id)];
    },
    setupEachRun: true,
    variantOf: { scenario: 'deduct', serverEnv: {}, label: 'capture of a hold' },
  },
  {
    name: 'add-events-off',
    title: 'AddPromotionalCredits with events off (CREDITS_EVENTS=off, a bench-only switch): add without the outbox',
    ...ADD_CALL,
    variantOf: { scenario: 'add', serverEnv: { CREDITS_EVENTS: 'off' }, label: 'events off' },
  },
  {
    name: 'add-streams',
    title: 'AddPromotionalCredits while 4 StreamEvents consumers follow the tenant (delivery lag reported)',
    ...ADD_CALL,
    eventStreams: 4,
    variantOf: { scenario: 'add', serverEnv: {}, label: 'with 4 event streams', compareTo: ['add-events-off', 'add'] },
  },
  {
    name: 'deduct-hot',
    title: 'DeductPromotionalCredits, one hot customer (row-lock bound)',
    rpc: { ...PROMO, method: 'deductPromotionalCredits', requestType: 'DeductPromotionalCreditsRequest' },
    cycle: 1,
    request: () => ({ customerId: HOT_CUSTOMER, amount: 1n, currencyCode: 'USD', description: 'bench deduct', creditType: CREDIT_TYPE_GENERAL }),
    varying: () => [],
    pgbenchVarying: { set: [], expressions: [] },
    setup: copyLedgerForPgbench,
    pgbench: [
      { name: 'pgbench 3-stmt', script: DEDUCT_3_STMT },
      { name: 'pgbench 1-stmt', script: DEDUCT_1_STMT },
    ],
    soakWeight: 10,
  },
  {
    name: 'redeem-coupon',
    title: 'RedeemCoupon, 10,000 customers racing for one coupon’s cap (row lock)',
    rpc: { ...COUPONS, method: 'redeemCoupon', requestType: 'RedeemCouponRequest' },
    cycle: CUSTOMERS,
    request: (i, ctx) => ({
      code: ctx.ids.couponCode,
      customerId: customerId(i % CUSTOMERS),
      amount: { amount: 1000n, currencyCode: 'USD' },
    }),
    varying: (i) => [customerId(i % CUSTOMERS)],
    pgbenchVarying: roundRobinCustomer,
    setup: async (env) => {
      const code = `BENCH-CAP-${Date.now()}`;
      env.ctx.ids.couponCode = code;
      env.ctx.ids.couponId = await createBenchCoupon(env, code, 'Benchmark coupon', COUPON_CAP);
    },
    check: async (env) => {
      const [row] = await env.sql<{ counted: string; rows: string }>(
        `SELECT c.redemption_count::text AS counted,
                (SELECT count(*) FROM coupon_redemptions r WHERE r.tenant_id = c.tenant_id AND r.coupon_id = c.id)::text AS rows
           FROM coupons c WHERE c.tenant_id = $1 AND c.id = $2`,
        [env.ctx.tenantId, env.ctx.ids.couponId],
      );
      if (!row) return ['the benchmark coupon is gone'];
      const problems: string[] = [];
      if (row.counted !== row.rows) problems.push(`coupon redemption_count is ${row.counted} but it has ${row.rows} redemptions`);
      if (BigInt(row.rows) > BigInt(COUPON_CAP)) problems.push(`coupon has ${row.rows} redemptions, above its cap of ${COUPON_CAP}`);
      return problems;
    },
    soakWeight: 10,
  },
  {
    name: 'redeem-coupon-capped',
    title: `RedeemCoupon, ${CAPPED_CUSTOMERS.toLocaleString('en')} customers racing for a max_redemptions ${CAPPED_MAX.toLocaleString('en')} coupon`,
    rpc: { ...COUPONS, method: 'redeemCoupon', requestType: 'RedeemCouponRequest' },
    cycle: CAPPED_CUSTOMERS,
    // Warm-up (and the recorded call, echo and replays) on a coupon of its
    // own; the measured window starts on a fresh one, so that its cap is
    // reached while measured and the check below counts exactly its uses.
    request: (i, ctx) => ({ code: ctx.ids.cappedWarmupCode, customerId: cappedCustomerId(i), amount: { amount: 1000n, currencyCode: 'USD' } }),
    measuredRequest: (i, ctx) => ({ code: ctx.ids.cappedCode, customerId: cappedCustomerId(i), amount: { amount: 1000n, currencyCode: 'USD' } }),
    expectedRefusals: ['COUPON_MAX_REDEMPTIONS_REACHED'],
    varying: (i) => [cappedCustomerId(i)],
    pgbenchVarying: { set: [`\\set n random(0, ${CAPPED_CUSTOMERS - 1})`], expressions: [`('k' || :n::text)`] },
    setup: async (env) => {
      for (const [id, label] of [
        ['cappedWarmupCode', 'WARMUP'],
        ['cappedCode', 'MEASURED'],
      ] as const) {
        const code = `BENCH-CAPPED-${label}-${Date.now()}`;
        env.ctx.ids[id] = code;
        env.ctx.ids[`${id}Id`] = await createBenchCoupon(env, code, 'Benchmark capped coupon', CAPPED_MAX);
      }
    },
    check: async (env) => {
      const problems: string[] = [];
      // A machine too busy to use the cap up in the window: the rest of it
      // is raced for now, through the redemptions' one write path
      // (coupon_redeem, groups of 8 from 4 connections at once), so the run
      // still ends at the cap, reached (and held) under concurrency.
      const redeemed = await cappedRows(env);
      if (redeemed < CAPPED_MAX) {
        const outcomes: Record<string, number> = {};
        let next = 0;
        const extra = CAPPED_MAX - redeemed + 500;
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            while (next < extra) {
              const first = next;
              next = Math.min(extra, next + 8);
              const requests = Array.from({ length: next - first }, (_, k) => ({
                code: env.ctx.ids.cappedCode,
                customer_id: `k-after-${first + k}`,
                amount: '1000',
                currency_code: 'USD',
                done_by: env.ctx.keyName,
                metadata: {},
                validate_only: false,
              }));
              const rows = await env.sql<{ reason: string | null }>(`SELECT reason FROM coupon_redeem($1::uuid, $2::jsonb)`, [env.ctx.tenantId, JSON.stringify(requests)]);
              for (const row of rows) outcomes[row.reason ?? 'OK'] = (outcomes[row.reason ?? 'OK'] ?? 0) + 1;
            }
          }),
        );
        const note =
          `the measured window used ${redeemed} of the cap; the rest was raced for after it (${extra} requests, coupon_redeem from 4 connections): ` +
          Object.entries(outcomes).map(([k, v]) => `${v} ${k}`).join(', ');
        console.log(`  redeem-coupon-capped: ${note}`);
        if ((outcomes.OK ?? 0) !== CAPPED_MAX - redeemed) problems.push(`after the window: ${outcomes.OK ?? 0} more redemptions, expected ${CAPPED_MAX - redeemed}`);
        for (const k of Object.keys(outcomes)) if (k !== 'OK' && k !== 'COUPON_MAX_REDEMPTIONS_REACHED') problems.push(`after the window: ${outcomes[k]} requests answered ${k}`);
      }
      for (const [id, which] of [
        ['cappedCodeId', 'measured'],
        ['cappedWarmupCodeId', 'warm-up'],
      ] as const) {
        const [row] = await env.sql<{ counted: string; rows: string; customers: string }>(
          `SELECT c.redemption_count::text AS counted,
                  (SELECT count(*) FROM coupon_redemptions r WHERE r.tenant_id = c.tenant_id AND r.coupon_id = c.id)::text AS rows,
                  (SELECT count(DISTINCT customer_id) FROM coupon_redemptions r WHERE r.tenant_id = c.tenant_id AND r.coupon_id = c.id)::text AS customers
             FROM coupons c WHERE c.tenant_id = $1 AND c.id = $2`,
          [env.ctx.tenantId, env.ctx.ids[id]],
        );
        if (!row) {
          problems.push(`the ${which} capped coupon is gone`);
          continue;
        }
        if (row.counted !== row.rows) problems.push(`${which} capped coupon: redemption_count is ${row.counted} but it has ${row.rows} redemptions`);
        if (BigInt(row.rows) > BigInt(CAPPED_MAX)) problems.push(`${which} capped coupon: ${row.rows} redemptions, above its cap of ${CAPPED_MAX}`);
        // (The warm-up coupon's sample call is recorded twice, by one customer.)
        if (which === 'measured' && row.customers !== row.rows) problems.push(`${which} capped coupon: ${row.rows} redemptions by only ${row.customers} customers`);
        // The measured run must use the cap up exactly (the rest refused with
        // COUPON_MAX_REDEMPTIONS_REACHED, which the service run reports).
        if (which === 'measured' && row.rows !== String(CAPPED_MAX)) {
          problems.push(`measured capped coupon ended with ${row.rows} redemptions, not exactly its cap of ${CAPPED_MAX}`);
        }
      }
      return problems;
    },
    soakWeight: 0,
  },
  {
    // Written from ../shared/design/API.md before CreditService existed: check the field names when it lands.
    name: 'redeem-credit',
    title: 'RedeemCustomerCredit, 10,000 multi-use credits',
    rpc: { ...CREDITS, method: 'redeemCustomerCredit', requestType: 'RedeemCustomerCreditRequest' },
    cycle: CUSTOMERS,
    request: (i, ctx) => ({ customerId: customerId(i % CUSTOMERS), creditId: ctx.lists.creditIds![i % CUSTOMERS] }),
    varying: (i, ctx) => [customerId(i % CUSTOMERS), ctx.lists.creditIds![i % CUSTOMERS]!],
    // pgbench cannot look the credit id up from the customer number without a query of its own.
    pgbenchVarying: { set: [], expressions: [] },
    setup: async (env) => {
      const couponId = await createBenchCoupon(env, `BENCH-CREDIT-${Date.now()}`, 'Benchmark credit coupon');
      const ids: string[] = new Array(CUSTOMERS);
      for (let start = 0; start < CUSTOMERS; start += BATCH_SIZE) {
        const credits = Array.from({ length: Math.min(BATCH_SIZE, CUSTOMERS - start) }, (_, k) => ({ customerId: customerId(start + k) }));
        const res = await env.call({ ...CREDITS, method: 'batchCreateCustomerCredits', requestType: 'BatchCreateCustomerCreditsRequest' }, { couponId, credits });
        (res.credits as Array<{ id: string; customerId: string }>).forEach((c) => (ids[Number(c.customerId.slice(1))] = c.id));
      }
      env.ctx.lists.creditIds = ids;
    },
    soakWeight: 0,
  },
  {
    // Written from ../shared/design/API.md before CreditService existed: check the field names when it lands.
    name: 'batch-credits',
    title: `BatchCreateCustomerCredits, ${BATCH_SIZE} credits per call`,
    rpc: { ...CREDITS, method: 'batchCreateCustomerCredits', requestType: 'BatchCreateCustomerCreditsRequest' },
    cycle: CUSTOMERS / BATCH_SIZE,
    units: { perCall: BATCH_SIZE, name: 'credits' },
    request: (i, ctx) => {
      const start = (i % (CUSTOMERS / BATCH_SIZE)) * BATCH_SIZE;
      return { couponId: ctx.ids.batchCouponId, credits: Array.from({ length: BATCH_SIZE }, (_, k) => ({ customerId: customerId(start + k) })) };
    },
    varying: () => [],
    pgbenchVarying: { set: [], expressions: [] },
    setup: async (env) => {
      env.ctx.ids.batchCouponId = await createBenchCoupon(env, `BENCH-BATCH-${Date.now()}`, 'Benchmark batch coupon');
    },
    soakWeight: 0,
  },
  {
    name: 'get-balance',
    title: 'GetCustomerBalance, 10,000 customers (read)',
    rpc: { ...PROMO, method: 'getCustomerBalance', requestType: 'GetCustomerBalanceRequest' },
    cycle: CUSTOMERS,
    request: (i) => ({ customerId: customerId(i % CUSTOMERS) }),
    varying: (i) => [customerId(i % CUSTOMERS)],
    pgbenchVarying: roundRobinCustomer,
    soakWeight: 30,
  },
  {
    name: 'list-page',
    title: `ListPromotionalCredits, first page of ${HISTORY_ENTRIES - 5} of a customer's history (read)`,
    rpc: { ...PROMO, method: 'listPromotionalCredits', requestType: 'ListPromotionalCreditsRequest' },
    cycle: HISTORY_CUSTOMERS,
    request: (i) => ({ pageSize: HISTORY_ENTRIES - 5, customerId: { is: historyCustomerId(i % HISTORY_CUSTOMERS) } }),
    varying: (i) => [historyCustomerId(i % HISTORY_CUSTOMERS)],
    pgbenchVarying: { set: [`\\set n random(0, ${HISTORY_CUSTOMERS - 1})`], expressions: [`('h' || :n::text)`] },
    soakWeight: 10,
  },
];

/** Creates a 100 USD fixed-amount coupon of lifetime frequency, capped at `maxRedemptions` uses when given; answers its id. */
async function createBenchCoupon(env: SetupEnv, code: string, name: string, maxRedemptions?: number): Promise<string> {
  const res = await env.call(
    { ...COUPONS, method: 'createCoupon', requestType: 'CreateCouponRequest' },
    {
      code,
      name,
      type: COUPON_TYPE_FIXED_AMOUNT,
      fixedAmount: { amount: 100n, currencyCode: 'USD' },
      frequency: FREQUENCY_LIFETIME,
      ...(maxRedemptions === undefined ? {} : { maxRedemptions }),
    },
  );
  return (res.coupon as { id: string }).id;
}

/**
 * Service runs compared with each other within one run (numerator ÷
 * denominator calls/s), with the target issue 19 set where there is one.
 */
export const COMPARISONS: Array<{ name: string; numerator: string; denominator: string; target?: number }> = [
  { name: 'metrics on ÷ metrics off', numerator: 'add', denominator: 'add-metrics-off', target: 0.95 },
  { name: 'tracing to OTLP ÷ tracing off', numerator: 'add-otlp', denominator: 'add', target: 0.8 },
  { name: 'two processes ÷ one', numerator: 'add-2-processes', denominator: 'add' },
  // The second round's cost targets (issues 14–17): a variant against the scenario it must keep up with.
  { name: 'expiring lots ÷ add', numerator: 'add-expiring', denominator: 'add', target: 0.9 },
  { name: 'metadata ÷ add', numerator: 'add-metadata', denominator: 'add', target: 0.9 },
  { name: 'deduct from 100 lots ÷ deduct-hot', numerator: 'deduct-lots', denominator: 'deduct-hot', target: 0.5 },
  { name: 'hold ÷ deduct', numerator: 'hold', denominator: 'deduct', target: 0.8 },
  { name: 'capture ÷ deduct', numerator: 'capture', denominator: 'deduct', target: 0.8 },
  { name: '4 event streams ÷ events off', numerator: 'add-streams', denominator: 'add-events-off', target: 0.85 },
  // What of that the outbox's writes cost alone, and what the streams add on top.
  { name: 'events on ÷ events off', numerator: 'add', denominator: 'add-events-off' },
  { name: '4 event streams ÷ events on', numerator: 'add-streams', denominator: 'add' },
];

/**
 * Issue 18's targets against the transport (service calls/s ÷ echo's): the
 * scenarios `--echo-rounds` measures again with their echo, alternating.
 * redeem-coupon's other target (p99 at most 3× echo's) is read from the
 * first pair.
 */
export const ECHO_TARGETS: Record<string, number> = {
  add: 0.6,
  'redeem-coupon': 0.5,
  'redeem-credit': 0.5,
  'get-balance': 0.7,
  'list-page': 0.5,
};
