import 'reflect-metadata';
import type { ClientConfig } from 'pg';
import { DataSource } from 'typeorm';
import type { PostgresDataSourceOptions } from 'typeorm/driver/postgres/PostgresDataSourceOptions';
import { StartupError } from '../common/startup-error';
import { DEFAULT_DB_STATEMENT_TIMEOUT_MS } from '../config';
import { ApiKeyEntity } from '../tenants/api-key.entity';
import { TenantEntity } from '../tenants/tenant.entity';
import { PromotionalCreditEntity } from '../promotional-credits/promotional-credit.entity';
import { CouponEntity } from '../coupons/coupon.entity';
import { CouponRedemptionEntity } from '../coupons/coupon-redemption.entity';
import { CustomerCreditEntity } from '../credits/customer-credit.entity';
import { InitialSchema1763800000000 } from './migrations/1763800000000-initial-schema';
import { IdempotencyKeys1763850000000 } from './migrations/1763850000000-idempotency-keys';
import { Coupons1763900000000 } from './migrations/1763900000000-coupons';
import { CustomerCredits1763950000000 } from './migrations/1763950000000-customer-credits';
import { PromotionalCreditBatches1764000000000 } from './migrations/1764000000000-promotional-credit-batches';
import { AppendOnlyLedger1764100000000 } from './migrations/1764100000000-append-only-ledger';
import { CreditLots1764200000000 } from './migrations/1764200000000-credit-lots';
import { LedgerAudit1764300000000 } from './migrations/1764300000000-ledger-audit';
import { CreditHolds1764400000000 } from './migrations/1764400000000-credit-holds';
import { Events1764500000000 } from './migrations/1764500000000-events';
import { LedgerWriteCosts1764550000000 } from './migrations/1764550000000-ledger-write-costs';
import { TwoPhaseRedemptions1764600000000 } from './migrations/1764600000000-two-phase-redemptions';
import { LedgerCheckDomains1764650000000 } from './migrations/1764650000000-ledger-check-domains';
import { OpenLots1764660000000 } from './migrations/1764660000000-open-lots';
import { BalanceAndHoldCheckDomains1764670000000 } from './migrations/1764670000000-balance-and-hold-check-domains';
import { LapsedRedemptionSweep1764750000000 } from './migrations/1764750000000-lapsed-redemption-sweep';
import { RedemptionCheckDomains1764800000000 } from './migrations/1764800000000-redemption-check-domains';
import { EventWatermarks1764900000000 } from './migrations/1764900000000-event-watermarks';
import { HoldReservations1765000000000 } from './migrations/1765000000000-hold-reservations';
import { UnreservedHoldsIndex1765100000000 } from './migrations/1765100000000-unreserved-holds-index';
import { TimeOrderedIds1765200000000 } from './migrations/1765200000000-time-ordered-ids';
import { RedemptionForeignKeys1765300000000 } from './migrations/1765300000000-redemption-foreign-keys';
import { RedemptionEventsByReference1765400000000 } from './migrations/1765400000000-redemption-events-by-reference';
import { CreditsFillfactor1765500000000 } from './migrations/1765500000000-credits-fillfactor';
import { ClosedLotsIndex1765600000000 } from './migrations/1765600000000-closed-lots-index';
import { applySqlDefinitions } from './sql-definitions';

export const ENTITIES = [TenantEntity, ApiKeyEntity, PromotionalCreditEntity, CouponEntity, CouponRedemptionEntity, CustomerCreditEntity];
export const MIGRATIONS = [
  InitialSchema1763800000000, IdempotencyKeys1763850000000, Coupons1763900000000, CustomerCredits1763950000000, PromotionalCreditBatches1764000000000,
  AppendOnlyLedger1764100000000,
  CreditLots1764200000000,
  LedgerAudit1764300000000,
  CreditHolds1764400000000,
  Events1764500000000,
  LedgerWriteCosts1764550000000,
  TwoPhaseRedemptions1764600000000,
  LedgerCheckDomains1764650000000,
  OpenLots1764660000000,
  BalanceAndHoldCheckDomains1764670000000,
  LapsedRedemptionSweep1764750000000,
  RedemptionCheckDomains1764800000000,
  EventWatermarks1764900000000,
  HoldReservations1765000000000,
  UnreservedHoldsIndex1765100000000,
  TimeOrderedIds1765200000000,
  RedemptionForeignKeys1765300000000,
  RedemptionEventsByReference1765400000000,
  CreditsFillfactor1765500000000,
  ClosedLotsIndex1765600000000,
];

export interface DataSourceOptions {
  url: string;
  poolSize: number;
  connectTimeoutMs: number;
  applicationName?: string;
  /** The pg Client class the pool makes connections of (tracing hands one that traces statements). */
  pgClient?: unknown;
  /** Sessions skip writing events (`credits.events = off`): the benchmark's switch, never for production. */
  eventsOff?: boolean;
  /** Sessions write REDEMPTION_CREATED with its payload, not by reference (`credits.redemption_event_snapshots = on`; Config.redemptionEventSnapshots). */
  redemptionEventSnapshots?: boolean;
  /** The most one statement may take: DEFAULT_DB_STATEMENT_TIMEOUT_MS unless given (the service's pool gives CREDITS_DB_STATEMENT_TIMEOUT_MS). */
  statementTimeoutMs?: number;
  /**
   * Statements may run as long as they take (migrations and the wait for
   * their lock, `credits verify`): no `statement_timeout` is set (one the
   * role or database sets still applies, but to verify's audit, whose
   * transaction turns it off: inAuditSnapshot).
   */
  noStatementTimeout?: boolean;
}

export function createDataSource(options: DataSourceOptions): DataSource {
  const extra: Record<string, unknown> = {
    // A database that is down must fail calls promptly (UNAVAILABLE), not hang.
    connectionTimeoutMillis: options.connectTimeoutMs,
    idle_in_transaction_session_timeout: 60_000,
  };
  // Backstop against a stuck statement holding a balance lock forever.
  if (!options.noStatementTimeout) extra.statement_timeout = options.statementTimeoutMs ?? DEFAULT_DB_STATEMENT_TIMEOUT_MS;
  if (options.pgClient) extra.Client = options.pgClient;
  // Read by the outbox writers (appendEvents, promotional_credit_flush_events, coupon_redeem).
  const settings = [...(options.eventsOff ? ['-c credits.events=off'] : []), ...(options.redemptionEventSnapshots ? ['-c credits.redemption_event_snapshots=on'] : [])];
  if (settings.length > 0) extra.options = settings.join(' ');
  return new DataSource({
    type: 'postgres',
    url: options.url,
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsTransactionMode: 'all',
    synchronize: false,
    logging: false,
    poolSize: options.poolSize,
    applicationName: options.applicationName ?? 'credits',
    extra,
  });
}

/** Any number between two server replicas; serialises their migrations. */
const MIGRATION_LOCK = 7_341_882_001;

/**
 * Applies pending migrations, then the SQL functions kept beside their code
 * (src/db/sql-definitions.ts); safe when several processes start at once.
 */
export async function runMigrations(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  try {
    await runner.connect();
    // Before anything is written: the ledger's hash chain is over UTF-8
    // bytes, and the SQL definitions' own text is UTF-8 (a LATIN1 server
    // refused it after every table had been made).
    const [{ encoding, name }] = (await runner.query(`SELECT current_setting('server_encoding') AS encoding, current_database() AS name`)) as Array<{
      encoding: string;
      name: string;
    }>;
    if (encoding !== 'UTF8') {
      throw new StartupError(
        `The database ${name} is in the ${encoding} encoding and credits needs UTF8: create one with CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0 and point DATABASE_URL at it.`,
      );
    }
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      const applied = await dataSource.runMigrations({ transaction: 'all' });
      return [...applied.map((m) => m.name), ...(await applySqlDefinitions(runner))];
    } finally {
      await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  } finally {
    await runner.release();
  }
}

/** The data source's database, as a plain pg client configuration. */
export function connectionOf(dataSource: DataSource): ClientConfig {
  const options = dataSource.options as PostgresDataSourceOptions;
  const extra = (options.extra ?? {}) as { connectionTimeoutMillis?: number };
  return {
    connectionString: options.url,
    host: options.host,
    port: options.port,
    user: options.username,
    password: typeof options.password === 'string' ? options.password : undefined,
    database: options.database,
    ssl: options.ssl as ClientConfig['ssl'],
    connectionTimeoutMillis: extra.connectionTimeoutMillis,
  };
}
