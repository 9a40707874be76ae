import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import { Event } from '../../gen/credits/v1/event_service';
import { testDatabaseUrl } from '../support/database';
import { eventsClient, listAll } from '../support/events';
import { useTenantClients } from '../support/tenant-clients';

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'credits.js');
const base = { currencyCode: 'USD', description: 'tail' };

/** `credits events tail ...` running against the test database: its stdout lines as they come. */
async function tail(args: string[]) {
  const child = spawn(process.execPath, [BIN, 'events', 'tail', ...args], {
    env: { ...process.env, DATABASE_URL: await testDatabaseUrl() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    lines,
    stderr: () => stderr,
    exited,
    /** Resolves once `n` lines came; `ms` is a hang guard. */
    async lineCount(n: number, ms: number): Promise<Event[]> {
      for (const end = Date.now() + ms; lines.length < n && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
      expect(lines.length, `lines of events tail (stderr: ${stderr})`).to.equal(n);
      return lines.map((line) => Event.fromJSON(JSON.parse(line)));
    },
    interrupt: () => child.kill('SIGINT'),
  };
}

function run(args: string[]): Promise<{ code: number; stderr: string }> {
  return testDatabaseUrl().then(
    (url) =>
      new Promise((resolve) =>
        execFile(process.execPath, [BIN, ...args], { env: { ...process.env, DATABASE_URL: url }, timeout: 30_000 }, (err, _stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr }),
        ),
      ),
  );
}

describe('credits events tail', function () {
  this.timeout(60_000);
  const t = useTenantClients();

  it('prints the tenant’s events as proto JSON lines, one each, follows new ones, and exits 0 on SIGINT', async () => {
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'a', amount: 10n });
    await t.promotionalCredits.holdPromotionalCredits({ ...base, customerId: 'a', amount: 4n });
    const everything = await tail(['--tenant', t.tenant.slug]);
    const held = await tail(['--tenant', t.tenant.slug, '--type', 'hold_created,EVENT_TYPE_BALANCE_DEPLETED', '--customer', 'b']);
    try {
      await everything.lineCount(2, 30_000); // the process starts and reads the history
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'b', amount: 10n });
      await t.promotionalCredits.holdPromotionalCredits({ ...base, customerId: 'b', amount: 10n });
      const printed = await everything.lineCount(5, 30_000);
      const events = eventsClient(t.server.address, t.tenant.readKey);
      const { events: listed } = await listAll(events);
      events.close();
      expect(printed, 'what ListEvents answers, in proto JSON').to.deep.equal(listed);
      const filtered = await held.lineCount(2, 30_000);
      expect(filtered.map((e) => e.id)).to.deep.equal(listed.filter((e) => e.customerId === 'b').slice(1).map((e) => e.id));

      // From a cursor: only what came after it.
      const after = await tail(['--tenant', t.tenant.slug, '--after', listed[2]!.cursor]);
      expect((await after.lineCount(2, 30_000)).map((e) => e.id)).to.deep.equal(listed.slice(3).map((e) => e.id));
      after.interrupt();
      expect(await after.exited).to.equal(0);
    } finally {
      everything.interrupt();
      held.interrupt();
    }
    expect(await everything.exited, everything.stderr()).to.equal(0);
    expect(await held.exited).to.equal(0);
  });

  it('stops quietly when its reader goes away mid-output (| head -1), whatever was left to write', async () => {
    await t.server.dataSource.query(
      `INSERT INTO events (tenant_id, type, customer_id, payload_kind, payload)
       SELECT $1, 'CUSTOMER_CREDIT_CREATED', 'c' || n, 'customer_credit', jsonb_build_object('customerId', 'c' || n, 'metadata', jsonb_build_object('note', repeat('x', 300)))
         FROM generate_series(1, 6000) AS n`,
      [t.tenant.id],
    );
    const child = spawn(process.execPath, [BIN, 'events', 'tail', '--tenant', t.tenant.slug], {
      env: { ...process.env, DATABASE_URL: await testDatabaseUrl() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // Read one chunk at a time, slowly (the writes back up again and again),
    // then go away with most of the output still to write.
    let chunks = 0;
    child.stdout.on('data', () => {
      chunks++;
      child.stdout.pause();
    });
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, i === 0 ? 1_500 : 50));
      child.stdout.resume();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(chunks, 'chunks read').to.be.at.least(15);
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(stderr, 'no warning, no error').to.not.match(/MaxListenersExceeded|Error/);
    expect(code).to.equal(0);
  });

  it('refuses a missing --tenant, an unknown type (exit 2) and a cursor it did not issue (exit 1)', async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['events', 'tail'], 2, /needs --tenant/],
      [['events', 'tail', '--tenant', t.tenant.slug, '--type', 'HOLD_MADE'], 2, /unknown event type "HOLD_MADE"/],
      [['events', 'tail', '--tenant', t.tenant.slug, '--after', 'junk'], 1, /after_cursor is not a cursor this service issued/],
      [['events', 'follow'], 2, /unknown events command "follow"/],
    ];
    const results = await Promise.all(cases.map(([args]) => run(args)));
    cases.forEach(([args, code, message], i) => {
      expect([results[i]!.code, message.test(results[i]!.stderr)], `${args.join(' ')}: ${results[i]!.stderr}`).to.deep.equal([code, true]);
    });
  });
});
