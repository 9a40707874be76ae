import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Client as PgClient } from 'pg';
import { CreditType } from '../../gen/credits/v1/promotional_credit_service';
import { freePort } from '../support/child-server';
import { testDatabaseUrl } from '../support/database';
import { withScratchDatabase } from '../support/scratch-database';
import { promotionalCredits, sharedServer, type TestServer } from '../support/server';
import { expectError } from '../support/status';

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'credits.js');
const SECRET = /^ck_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/;
const base = { currencyCode: '', description: 'cli', creditType: CreditType.CREDIT_TYPE_UNSPECIFIED, reference: '' };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/credits.js <args>` against the test database (or `databaseUrl`), with `extraEnv` set too. */
async function credits(args: string[], databaseUrl?: string, extraEnv: Record<string, string> = {}): Promise<Run> {
  const env = Object.assign({}, process.env, { DATABASE_URL: databaseUrl ?? (await testDatabaseUrl()), LOG_LEVEL: 'silent' }, extraEnv);
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const lines = (text: string) => text.split('\n').filter((line) => line !== '');
const slug = () => `cli-${randomBytes(5).toString('hex')}`;

describe('the credits command', function () {
  this.timeout(60_000);
  let server: TestServer;

  before(async () => {
    server = await sharedServer();
  });

  it('creates a tenant and a key that works against the server, and revokes it', async () => {
    const tenant = slug();
    const created = await credits(['tenant', 'create', tenant, '--currency', 'JPY']);
    expect(created, created.stderr).to.deep.include({ code: 0 });
    expect(created.stdout).to.include(`created tenant ${tenant}`).and.include('default currency JPY');

    const key = await credits(['api-key', 'create', '--tenant', tenant, '--name', 'billing-job', '--scopes', 'read,write']);
    expect(key.code, key.stderr).to.equal(0);
    const out = lines(key.stdout);
    const secret = out[out.length - 1]!;
    expect(secret).to.match(SECRET);
    expect(out.slice(0, -1).join('\n'), 'the secret appears only on the last line').to.not.include(secret);
    expect(key.stdout.endsWith(`${secret}\n`)).to.equal(true);

    const client = promotionalCredits(server.address, secret);
    try {
      const res = await client.addPromotionalCredits({ ...base, customerId: 'c', amount: 500n });
      expect(res.promotionalCredit!).to.deep.include({ currencyCode: 'JPY', doneBy: 'billing-job', amountDecimal: '500' });
      // A single-currency tenant (no --multi-currency) refuses other currencies.
      await expectError(client.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, currencyCode: 'USD' }), status.INVALID_ARGUMENT, 'VALIDATION_FAILED');

      const revoked = await credits(['api-key', 'revoke', '--tenant', tenant, '--name', 'billing-job']);
      expect(revoked.code, revoked.stderr).to.equal(0);
      expect(revoked.stdout).to.include('revoked API key "billing-job"');
      await expectError(client.getCustomerBalance({ customerId: 'c' }), status.UNAUTHENTICATED, 'API_KEY_INVALID');
      const again = await credits(['api-key', 'revoke', '--tenant', tenant, '--name', 'billing-job']);
      expect(again.code).to.equal(1);
      expect(again.stderr).to.include('no active key named "billing-job"');
    } finally {
      client.close();
    }

    // The name is free again once revoked; a read-only key cannot write.
    const reader = await credits(['api-key', 'create', '--tenant', tenant, '--name', 'billing-job', '--scopes', 'read']);
    expect(reader.code, reader.stderr).to.equal(0);
    const readClient = promotionalCredits(server.address, lines(reader.stdout).pop()!);
    try {
      expect((await readClient.getCustomerBalance({ customerId: 'c' })).balance!.balances[0]!.amount).to.equal(500n);
      await expectError(readClient.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n }), status.PERMISSION_DENIED, 'API_KEY_SCOPE_MISSING');
    } finally {
      readClient.close();
    }
  });

  it('creates a multi-currency tenant', async () => {
    const tenant = slug();
    expect((await credits(['tenant', 'create', tenant, '--multi-currency'])).stdout).to.include('default currency USD, multi-currency');
    const key = await credits(['api-key', 'create', '--tenant', tenant, '--name', 'k', '--scopes', 'write,read']);
    const client = promotionalCredits(server.address, lines(key.stdout).pop()!);
    try {
      expect((await client.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n, currencyCode: 'BHD' })).promotionalCredit!.amountDecimal).to.equal('0.001');
      expect((await client.addPromotionalCredits({ ...base, customerId: 'c', amount: 1n })).promotionalCredit!.currencyCode).to.equal('USD');
    } finally {
      client.close();
    }
  });

  it('verify passes on the test database', async () => {
    const run = await credits(['verify']);
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^ledger ok: \d+ balances, \d+ entries checked\n$/);
  });

  it('verify exits 1 and names each problem of a broken ledger', async function () {
    // A database of its own, so the broken ledger is never seen by anything else.
    const testUrl = new URL(await testDatabaseUrl());
    const name = `credits_verify_${randomBytes(4).toString('hex')}`;
    try {
      await server.dataSource.query(`CREATE DATABASE ${name}`);
    } catch (err) {
      if ((err as { code?: string }).code === '42501') this.skip(); // no CREATEDB privilege on this DATABASE_URL
      throw err;
    }
    const url = Object.assign(new URL(testUrl.href), { pathname: `/${name}` }).href;
    try {
      const migrated = await credits(['migrate'], url);
      expect(migrated.code, migrated.stderr).to.equal(0);
      expect((await credits(['verify'], url)).stdout).to.equal('ledger ok: 0 balances, 0 entries checked\n');

      const pg = new PgClient({ connectionString: url });
      await pg.connect();
      try {
        const tenantId: string = (await pg.query(`INSERT INTO tenants (slug, default_currency) VALUES ('acme', 'USD') RETURNING id`)).rows[0].id;
        await pg.query(`INSERT INTO promotional_credit_balances (tenant_id, customer_id, currency_code, amount) VALUES ($1, 'cust-9', 'USD', 250), ($1, 'fine', 'EUR', 5)`, [tenantId]);
        await pg.query(
          `INSERT INTO promotional_credits (tenant_id, customer_id, currency_code, type, amount, description, credit_type, closing_balance, done_by)
           VALUES ($1, 'cust-9', 'USD', 'INCREMENT', 200, 'x', 'GENERAL', 200, 'k'),
                  ($1, 'cust-9', 'USD', 'INCREMENT', 100, 'x', 'GENERAL', 250, 'k'),
                  ($1, 'fine', 'EUR', 'INCREMENT', 5, 'x', 'GENERAL', 5, 'k')`,
          [tenantId],
        );
      } finally {
        await pg.end();
      }
      const run = await credits(['verify'], url);
      expect(run.code).to.equal(1);
      const out = lines(run.stdout);
      expect(out).to.have.length(6);
      expect(out[0]).to.equal('BALANCE_NOT_SUM_OF_ENTRIES: tenant acme, customer cust-9, USD: balance is 250 but its 2 entries sum to 300');
      expect(out[1]).to.match(/^CLOSING_BALANCE_CHAIN_BROKEN: tenant acme, customer cust-9, USD: closing balances do not chain: entry [0-9a-f-]{36} \(seq \d+\) has closing_balance 250, expected closing_balance 300$/);
      // Forged rows have neither lots nor hashes, which verify also checks.
      expect(out.slice(2, 4)).to.deep.equal([
        'LOTS_NOT_SUM_OF_BALANCE: tenant acme, customer cust-9, USD: balance is 250 but its lots hold 0',
        'LOTS_NOT_SUM_OF_BALANCE: tenant acme, customer fine, EUR: balance is 5 but its lots hold 0',
      ]);
      expect(out.slice(4).map((l) => l.replace(/[0-9a-f]{64}/, '<hash>').replace(/[0-9a-f-]{36}/, '<id>').replace(/seq \d+/, 'seq N'))).to.have.members([
        'HASH_CHAIN_BROKEN: tenant acme, customer cust-9, USD: entry <id> (seq N) has hash (none), expected <hash>',
        'HASH_CHAIN_BROKEN: tenant acme, customer fine, EUR: entry <id> (seq N) has hash (none), expected <hash>',
      ]);
      expect(run.stderr).to.include('ledger broken: 1 of 2 balances (3 entries checked) have problems; 4 lot, hold or hash chain problems');
    } finally {
      await server.dataSource.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });

  /**
   * verify against a scratch database whose audit reads wait far past 200 ms
   * (a lock held on the balances: what a slow audit looks like to a
   * statement timeout); `prepare` sets a timeout on the migrated database.
   */
  const verifyWhileLocked = async (test: Mocha.Context, prepare: (url: string, name: string) => Promise<void>, env: Record<string, string> = {}) => {
    // A database of its own: the lock below would hold up everything else on it.
    await withScratchDatabase(test, 'credits_verify', '', async (url, name) => {
      const holder = new PgClient({ connectionString: url });
      try {
        expect((await credits(['migrate'], url)).code).to.equal(0);
        await prepare(url, name);
        await holder.connect();
        await holder.query('BEGIN');
        await holder.query('LOCK TABLE promotional_credit_balances IN ACCESS EXCLUSIVE MODE');
        let ended = false;
        const run = credits(['verify'], url, env).finally(() => (ended = true));
        let waits = 0;
        while (waits < 3 && !ended) {
          // Seen waiting for the lock three times, 200 ms apart: over 400 ms in
          // one statement. (Read on another connection: within the holder's
          // transaction pg_stat_activity stays as it first read it.)
          const [{ n }] = await server.dataSource.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'credits-cli' AND wait_event_type = 'Lock'`,
            [name],
          );
          waits = n > 0 ? waits + 1 : 0;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        await holder.query('COMMIT');
        const done = await run;
        expect(done.code, done.stderr).to.equal(0);
        expect(done.stdout).to.equal('ledger ok: 0 balances, 0 entries checked\n');
      } finally {
        await holder.end().catch(() => undefined);
      }
    });
  };

  it('verify runs its statements as long as they take, not within the statement timeout of calls', async function () {
    await verifyWhileLocked(this, async () => undefined, { CREDITS_DB_STATEMENT_TIMEOUT_MS: '200' });
  });

  it('verify runs its statements as long as they take, whatever statement_timeout the database or role sets', async function () {
    // A role's (or database's) statement_timeout used to apply to the
    // audit, which sets none of its own, and cut it on a large ledger.
    await verifyWhileLocked(this, async (_url, name) => {
      await server.dataSource.query(`ALTER DATABASE ${name} SET statement_timeout = '200ms'`);
    });
  });

  describe('bad arguments exit non-zero with a clear message', () => {
    const cases: Array<[args: string[], code: number, message: RegExp]> = [
      [[], 2, /usage: credits <command>/],
      [['frobnicate'], 2, /unknown command "frobnicate"/],
      [['tenant'], 2, /tenant needs a command: create/],
      [['tenant', 'delete', 'x'], 2, /unknown tenant command "delete"/],
      [['tenant', 'create'], 2, /tenant create takes exactly one <slug>/],
      [['tenant', 'create', 'a', 'b'], 2, /tenant create takes exactly one <slug>/],
      [['tenant', 'create', 'x', '--bogus'], 2, /bogus/],
      [['tenant', 'create', 'x', '--currency'], 2, /currency/],
      [['tenant', 'create', 'Bad_Slug'], 1, /tenant slug must be 1 to 63 characters/],
      [['tenant', 'create', 'ok-slug', '--currency', 'usd'], 1, /currency "usd" is not an ISO 4217 code/],
      [['api-key'], 2, /api-key needs a command: create or revoke/],
      [['api-key', 'create', '--tenant', 'x', '--name', 'n'], 2, /api-key create needs --tenant, --name and --scopes/],
      [['api-key', 'create', '--tenant', 'x', '--name', 'n', '--scopes', 'admin'], 1, /scopes must be a comma-separated list of read, write/],
      [['api-key', 'create', '--tenant', 'no-such-tenant-here', '--name', 'n', '--scopes', 'read'], 1, /tenant "no-such-tenant-here" does not exist/],
      [['api-key', 'create', '--tenant', 'x', '--name', 'bad name', '--scopes', 'read'], 1, /key name must be/],
      [['api-key', 'revoke', '--tenant', 'x'], 2, /api-key revoke needs --tenant and --name/],
      [['verify', 'now'], 2, /verify takes no arguments/],
    ];
    // The runs are independent: start them all up front, a few at a time, so the suite stays fast.
    const runs = new Map<string[], Promise<Run>>();
    before(async () => {
      const lanes: Array<Promise<unknown>> = [Promise.resolve(), Promise.resolve(), Promise.resolve(), Promise.resolve()];
      cases.forEach(([args], i) => {
        const run = lanes[i % lanes.length]!.then(() => credits(args));
        lanes[i % lanes.length] = run;
        runs.set(args, run);
      });
      await Promise.all(lanes);
    });

    for (const [args, code, message] of cases) {
      it(`credits ${args.join(' ') || '(nothing)'} → exit ${code}`, async () => {
        const run = await runs.get(args)!;
        expect(run.code, run.stdout + run.stderr).to.equal(code);
        expect(run.stderr + run.stdout).to.match(message);
        expect(run.stderr).to.not.match(/\n\s+at /); // no stack trace
      });
    }

    it('refuses a tenant that already exists', async () => {
      const tenant = slug();
      expect((await credits(['tenant', 'create', tenant])).code).to.equal(0);
      const again = await credits(['tenant', 'create', tenant]);
      expect(again.code).to.equal(1);
      expect(again.stderr).to.equal(`credits: tenant "${tenant}" already exists\n`);
    });

    it('refuses a second active key of the same name', async () => {
      const tenant = slug();
      await credits(['tenant', 'create', tenant]);
      expect((await credits(['api-key', 'create', '--tenant', tenant, '--name', 'k', '--scopes', 'read'])).code).to.equal(0);
      const again = await credits(['api-key', 'create', '--tenant', tenant, '--name', 'k', '--scopes', 'read']);
      expect(again.code).to.equal(1);
      expect(again.stderr).to.include('already has an active key named "k"');
    });

    it('verify exits 3, not 1, when it cannot finish', async () => {
      const run = await credits(['verify'], `postgres://credits@127.0.0.1:${await freePort()}/credits`);
      expect(run.code, run.stderr).to.equal(3);
      expect(run.stderr).to.include('verify could not finish, so it says nothing of the ledger');
    });

    it('refuses an invalid DATABASE_URL', async () => {
      const run = await credits(['verify'], 'mysql://localhost/x');
      expect(run.code).to.equal(1);
      expect(run.stderr).to.include('DATABASE_URL must be a postgres:// or postgresql:// URL');
    });

    it('shows the usage, verify included, on help', async () => {
      const run = await credits(['help']);
      expect(run.code).to.equal(0);
      expect(run.stdout).to.include('verify').and.include('api-key revoke --tenant <slug> --name <name>');
    });
  });
});
