import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DomainError } from '../common/domain-error';
import { ConfigError, loadConfig, type Config } from '../config';
import { openDatabase } from '../db/database';
import { inAuditSnapshot } from '../db/transaction';
import { StartupError } from '../common/startup-error';
import { serve } from '../main';
import { verifyLedger } from '../promotional-credits/ledger-audit';
import { verifyRedemptions } from '../coupons/redemption-audit';
import { createApiKey, createTenant, findTenant, parseScopes, revokeApiKey, TenantAdminError } from '../tenants/tenants.service';
import { eventTypeOfName, tailEvents } from './events-tail';

const USAGE = `usage: credits <command>

  serve                              run the gRPC server (npm start)
  migrate                            apply pending database migrations
  tenant create <slug> [--currency USD] [--multi-currency]
  api-key create --tenant <slug> --name <name> --scopes read,write
                                     the new secret is the last line of stdout
  api-key revoke --tenant <slug> --name <name>
  verify [--tenant <slug>]           audit the ledger (of every tenant, or one): every balance equals the sum
                                     of its entries, closing balances and hashes
                                     chain, lots and holds add up; and the
                                     redemptions: every coupon's and credit's
                                     redemption_count equals its held and
                                     confirmed redemptions, within its limits,
                                     and every redemption's coupon and credit
                                     link exist, as does every redemption a
                                     REDEMPTION_CREATED event names; exits 1 and names each
                                     problem otherwise, 3 when it could not
                                     finish (no verdict)
  events tail --tenant <slug> [--after CURSOR] [--type TYPE ...] [--customer ID]
                                     print the tenant's events (after CURSOR, or
                                     from the oldest kept), one proto JSON line
                                     each, and follow new ones until interrupted;
                                     TYPE: HOLD_CREATED, ... (repeat or comma-separate)

Environment: DATABASE_URL (absent: the embedded PostgreSQL, in .data/ or,
as root, /var/lib/credits/),
CREDITS_ADDRESS (default 0.0.0.0:50051), LOG_LEVEL, CREDITS_TLS_CERT,
CREDITS_TLS_KEY, CREDITS_TLS_CLIENT_CA.`;

class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  try {
    const config = loadConfig();
    switch (command) {
      case 'serve':
        await serve(config);
        return 0;
      case 'migrate':
        return await withDatabase(config, async () => {
          console.log('migrations applied');
        });
      case 'tenant':
        if (sub !== 'create') throw new UsageError(sub === undefined ? 'tenant needs a command: create' : `unknown tenant command "${sub}"`);
        return await tenantCreate(config, rest);
      case 'api-key':
        if (sub === 'create') return await apiKeyCreate(config, rest);
        if (sub === 'revoke') return await apiKeyRevoke(config, rest);
        throw new UsageError(sub === undefined ? 'api-key needs a command: create or revoke' : `unknown api-key command "${sub}"`);
      case 'verify':
        return await verify(config, argv.slice(1));
      case 'events':
        if (sub !== 'tail') throw new UsageError(sub === undefined ? 'events needs a command: tail' : `unknown events command "${sub}"`);
        return await eventsTail(config, rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`credits: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof TenantAdminError || err instanceof ConfigError || err instanceof StartupError || err instanceof DomainError) {
      console.error(`credits: ${err.message}`);
      return 1;
    }
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      console.error(`credits: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    console.error('credits: failed:', err);
    return 1;
  }
}

/** Runs `work` on the database; the exit code is what it answers, 0 when nothing. */
async function withDatabase(
  config: Config,
  work: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<number | void>,
  options: { noStatementTimeout?: boolean } = {},
): Promise<number> {
  const database = await openDatabase(config, { applicationName: 'credits-cli', poolSize: 2, noStatementTimeout: options.noStatementTimeout });
  try {
    return (await work(database)) ?? 0;
  } finally {
    await database.close();
  }
}

function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>) {
  return parseArgs({ args, options, allowPositionals: true, strict: true });
}

async function tenantCreate(config: Config, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { currency: { type: 'string' }, 'multi-currency': { type: 'boolean' } });
  if (positionals.length !== 1) throw new UsageError('tenant create takes exactly one <slug>');
  return withDatabase(config, async ({ dataSource }) => {
    const tenant = await createTenant(dataSource, {
      slug: positionals[0]!,
      currency: (values.currency as string | undefined) ?? 'USD',
      multiCurrency: values['multi-currency'] === true,
    });
    console.log(`created tenant ${tenant.slug} (${tenant.id}), default currency ${tenant.defaultCurrency}${tenant.multiCurrency ? ', multi-currency' : ''}`);
  });
}

async function apiKeyCreate(config: Config, args: string[]): Promise<number> {
  const { values } = parse(args, { tenant: { type: 'string' }, name: { type: 'string' }, scopes: { type: 'string' } });
  if (!values.tenant || !values.name || !values.scopes) throw new UsageError('api-key create needs --tenant, --name and --scopes');
  const scopes = parseScopes(values.scopes as string);
  return withDatabase(config, async ({ dataSource }) => {
    const { key, secret } = await createApiKey(dataSource, { tenantSlug: values.tenant as string, name: values.name as string, scopes });
    console.log(`created API key "${key.name}" for tenant ${values.tenant as string} with scopes ${key.scopes.join(',')}; the secret follows and is not shown again:`);
    console.log(secret);
  });
}

async function apiKeyRevoke(config: Config, args: string[]): Promise<number> {
  const { values } = parse(args, { tenant: { type: 'string' }, name: { type: 'string' } });
  if (!values.tenant || !values.name) throw new UsageError('api-key revoke needs --tenant and --name');
  return withDatabase(config, async ({ dataSource }) => {
    await revokeApiKey(dataSource, { tenantSlug: values.tenant as string, name: values.name as string });
    console.log(`revoked API key "${values.name as string}" of tenant ${values.tenant as string}`);
  });
}

async function eventsTail(config: Config, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    tenant: { type: 'string' },
    after: { type: 'string' },
    type: { type: 'string', multiple: true },
    customer: { type: 'string' },
  });
  if (positionals.length > 0 || !values.tenant) throw new UsageError('events tail needs --tenant <slug> (and takes no other arguments)');
  const types = ((values.type as string[] | undefined) ?? []).flatMap((list) => list.split(',')).map((name) => {
    const type = eventTypeOfName(name);
    if (!type) throw new UsageError(`unknown event type "${name}" (for example PROMOTIONAL_CREDIT_CREATED, HOLD_CREATED, COUPON_UPDATED)`);
    return type;
  });
  return withDatabase(config, ({ dataSource }) =>
    tailEvents(dataSource, {
      tenantSlug: values.tenant as string,
      afterCursor: (values.after as string | undefined) ?? '',
      types,
      customerId: (values.customer as string | undefined) ?? '',
      cursorVersion: config.eventCursorVersion,
    }),
  );
}

/**
 * `credits verify [--tenant <slug>]`: the whole ledger check (balances,
 * chains, lots, holds, hashes) and the redemption counts, of every tenant or
 * one; exit 1 on any problem, 3 when it could not finish (the database did
 * not answer, a statement failed): a monitor must not read that as a broken
 * ledger, nor as a sound one. Its statements run as long as they take: the
 * check's time grows with the ledger (14-25 s for 0.68 M entries on the
 * benchmark's machine), and under the calls' 30 s statement timeout it was
 * canceled (exit 3) on that database with fewer entries, right after a
 * benchmark run. It reads one snapshot and locks no row a call needs.
 */
async function verify(config: Config, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { tenant: { type: 'string' } });
  if (positionals.length > 0) throw new UsageError('verify takes no arguments but --tenant <slug>');
  return auditing(() => withDatabase(config, async ({ dataSource }) => {
    const tenantId = values.tenant === undefined ? undefined : (await findTenant(dataSource.manager, values.tenant as string)).id;
    const { ledger, redemptions } = await inAuditSnapshot(dataSource, async (manager) => ({
      ledger: await verifyLedger(manager, { tenantId }),
      redemptions: await verifyRedemptions(manager, { tenantId }),
    }));
    const { audit, details: ledgerDetails } = ledger;
    const details = [...ledgerDetails, ...redemptions];
    if (audit.brokenBalances === 0 && details.length === 0) {
      console.log(`ledger ok: ${audit.balancesChecked} balances, ${audit.entriesChecked} entries checked`);
      return 0;
    }
    for (const problem of [...audit.problems, ...details]) console.log(`${problem.kind}: ${problem.message}`);
    const unlisted = audit.brokenBalances - new Set(audit.problems.map((p) => `${p.tenantId}/${p.customerId}/${p.currencyCode}`)).size;
    if (unlisted > 0) console.log(`... and ${unlisted} more broken balances not listed`);
    console.error(
      `credits: ledger broken: ${audit.brokenBalances} of ${audit.balancesChecked} balances (${audit.entriesChecked} entries checked) have problems; ${ledgerDetails.length} lot, hold or hash chain problems; ${redemptions.length} redemption count problems`,
    );
    return 1;
  }, { noStatementTimeout: true }));
}

/** An audit's exit code: 3 for an audit that failed to finish (an unknown tenant stays a plain error, 1). */
async function auditing(audit: () => Promise<number>): Promise<number> {
  try {
    return await audit();
  } catch (err) {
    if (err instanceof UsageError || err instanceof TenantAdminError) throw err;
    console.error(`credits: verify could not finish, so it says nothing of the ledger: ${err instanceof Error ? err.message : String(err)}`);
    return 3;
  }
}
