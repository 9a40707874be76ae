import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { sharedServer, type TestServer } from '../support/server';
import { newTenant, type TestTenant } from '../support/tenant';

const REPO = path.join(__dirname, '..', '..', '..');
const run = promisify(execFile);

/**
 * What another team writes against the installed package: compiled with
 * `tsc --strict`, then run against a live server (address and key from the
 * environment). It prints one JSON line the test checks.
 */
export const CONSUMER_SNIPPET = `import { createCreditsClient, CouponType, CreditsError, EventType, Frequency, type PromotionalCredit } from '@credits/client';

async function main(): Promise<void> {
  const client = createCreditsClient({
    address: process.env.CREDITS_ADDRESS!, // e.g. "credits.internal:50051"
    apiKey: process.env.CREDITS_API_KEY!,
    defaultDeadlineMs: 5_000,
  });
  try {
    // Add credits: money is a bigint of minor units (or amountDecimal: "10.50").
    const added = await client.promotionalCredits.addPromotionalCredits({
      customerId: 'cust_42',
      amount: 1050n,
      currencyCode: 'USD',
      description: 'welcome credit',
    });
    for (let i = 1; i <= 4; i++) {
      await client.promotionalCredits.addPromotionalCredits(
        { customerId: 'cust_42', amountDecimal: '1.00', description: \`top-up \${i}\` },
        { idempotencyKey: \`top-up-cust_42-\${i}\` }, // safe to resend: applied once
      );
    }

    // Walk every page of ListPromotionalCredits (2 entries per page here).
    const entries: PromotionalCredit[] = [];
    for await (const entry of client.promotionalCredits.listPromotionalCreditsAll({ customerId: { is: 'cust_42' }, pageSize: 2 })) {
      entries.push(entry);
    }

    // A deduct larger than the balance is a typed error with a reason.
    let refusedReason = '';
    let refusedBalance = '';
    try {
      await client.promotionalCredits.deductPromotionalCredits({ customerId: 'cust_42', amount: 1_000_000n, description: 'too much' });
    } catch (err) {
      if (!(err instanceof CreditsError) || err.reason !== 'INSUFFICIENT_BALANCE') throw err;
      refusedReason = \`\${err.codeName} \${err.reason}\`;
      refusedBalance = err.metadata.balance ?? '';
    }

    // Coupons: create a 10% coupon and redeem it on a 20.00 USD order.
    const code = \`WELCOME\${Date.now()}\`;
    await client.coupons.createCoupon({ code, name: 'Welcome 10%', type: CouponType.COUPON_TYPE_PERCENTAGE, percentage: 10, frequency: Frequency.FREQUENCY_ONCE });
    const redeemed = await client.coupons.redeemCoupon({ code, customerId: 'cust_42', amount: { amount: 2000n, currencyCode: 'USD' } });
    const discount: bigint = redeemed.redemption!.discount!.amount;

    const balance = await client.promotionalCredits.getCustomerBalance({ customerId: 'cust_42' });

    // Events: every change in commit order; the iterator reconnects and resumes by itself.
    const events: string[] = [];
    for await (const event of client.events.stream({ types: [EventType.EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED] })) {
      events.push(\`\${event.cursor.length} \${event.promotionalCredit!.description}\`);
      if (events.length === 5) break; // closes the stream
    }
    console.log(JSON.stringify({
      firstBalance: added.balance!.balances[0]!.amountDecimal,
      balance: balance.balance!.balances[0]!.amountDecimal,
      listed: entries.map((e) => e.description),
      refusedReason,
      refusedBalance,
      discount: discount.toString(),
      events,
    }));
  } finally {
    client.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
`;

/** Children run without the npm_config_* of an enclosing `npm test` that point at this repository. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const name of ['npm_config_local_prefix', 'npm_config_prefix', 'INIT_CWD']) delete env[name];
  return env;
}

describe('@credits/client as an installed package', function () {
  this.timeout(600_000);
  let server: TestServer;
  let tenant: TestTenant;
  let workDir: string;

  before(async () => {
    server = await sharedServer();
    tenant = await newTenant(server.dataSource);
    workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'credits-consumer-'));
  });
  after(() => {
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  });

  it('packs with a plain npm pack, installs from the tarball into a fresh project, compiles with tsc --strict and calls a running server', async () => {
    // Exactly what a release runs: `npm pack` in client/, whose prepack builds
    // the package. No build beforehand, so a package that does not build
    // itself when packed fails here.
    const clientDir = path.join(REPO, 'client');
    fs.rmSync(path.join(clientDir, 'dist'), { recursive: true, force: true });
    const { stdout: packOut } = await run('npm', ['pack'], { cwd: clientDir, env: childEnv() });
    const filename = packOut.trim().split('\n').at(-1)!;
    const rootPackage = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));
    expect(filename).to.equal(`credits-client-${rootPackage.version}.tgz`);
    const tarball = path.join(workDir, filename);
    fs.copyFileSync(path.join(clientDir, filename), tarball);
    fs.rmSync(path.join(clientDir, filename));
    const { stdout: listing } = await run('tar', ['-tzf', tarball]);
    const files = listing
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => line.replace(/^package\//, ''));
    expect(files).to.include.members([
      'package.json',
      'README.md',
      'dist/client/src/index.js',
      'dist/client/src/index.d.ts',
      'dist/gen/credits/v1/promotional_credit_service.js',
      'dist/gen/credits/v1/coupon_service.d.ts',
      'dist/gen/credits/v1/event_service.js',
      'dist/client/src/events-client.d.ts',
      'dist/gen/google/rpc/error_details.js',
    ]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), 'no TypeScript sources').to.deep.equal([]);

    // A fresh project outside the repository installs the tarball from disk.
    const project = path.join(workDir, 'consumer');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'credits-consumer', version: '1.0.0', private: true }, null, 2));
    const typesNode = `@types/node@${rootPackage.devDependencies['@types/node']}`;
    await run('npm', ['install', tarball, typesNode, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: project, env: childEnv() });
    const installed = JSON.parse(fs.readFileSync(path.join(project, 'package.json'), 'utf8'));
    expect(installed.dependencies['@credits/client']).to.match(/^file:/);
    expect(fs.existsSync(path.join(project, 'node_modules', '@grpc', 'grpc-js', 'package.json')), 'runtime dependency installed').to.equal(true);
    const manifest = JSON.parse(fs.readFileSync(path.join(project, 'node_modules', '@credits', 'client', 'package.json'), 'utf8'));
    expect([manifest.name, manifest.version]).to.deep.equal(['@credits/client', rootPackage.version]);

    // Compile the consumer with the repository's TypeScript in strict mode.
    fs.writeFileSync(path.join(project, 'consumer.ts'), CONSUMER_SNIPPET);
    const tsc = path.join(REPO, 'node_modules', '.bin', 'tsc');
    await run(tsc, ['--strict', '--target', 'es2022', '--module', 'nodenext', '--types', 'node', 'consumer.ts'], { cwd: project }).catch((err: { stdout?: string }) => {
      throw new Error(`tsc --strict failed:\n${err.stdout ?? String(err)}`);
    });

    // Run it against the live server (this process serves it, so the child runs asynchronously).
    const { stdout } = await run('node', ['consumer.js'], {
      cwd: project,
      env: childEnv({ CREDITS_ADDRESS: server.address, CREDITS_API_KEY: tenant.rwKey }),
      timeout: 60_000,
    });
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!);
    expect(result).to.deep.equal({
      firstBalance: '10.50',
      balance: '14.50',
      listed: ['top-up 4', 'top-up 3', 'top-up 2', 'top-up 1', 'welcome credit'],
      refusedReason: 'FAILED_PRECONDITION INSUFFICIENT_BALANCE',
      refusedBalance: '1450',
      discount: '200',
      events: ['34 welcome credit', '34 top-up 1', '34 top-up 2', '34 top-up 3', '34 top-up 4'],
    });
  });
});
