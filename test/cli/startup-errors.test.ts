import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Client as PgClient } from 'pg';
import { freePort } from '../support/child-server';
import { testDatabaseUrl } from '../support/database';
import { withScratchDatabase } from '../support/scratch-database';

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'credits.js');

interface Run {
  code: number;
  stderr: string;
}

/** Runs `node bin/credits.js <args>` with `env` over the test's own environment. */
function credits(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, LOG_LEVEL: 'silent', ...env }, timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr });
    });
  });
}

/** The one line the CLI printed of its own (grpc-js may log a line before it), without a stack trace. */
function sentence(run: Run): string {
  expect(run.code, run.stderr).to.equal(1);
  expect(run.stderr, 'no stack trace').to.not.match(/\n\s+at /);
  const ours = run.stderr.split('\n').filter((line) => line.startsWith('credits: '));
  expect(ours, run.stderr).to.have.length(1);
  return ours[0]!;
}

/** A TCP port something else listens on, for as long as the test runs. */
async function takenPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('what the credits command says when it cannot start', function () {
  this.timeout(60_000);
  let url: string;

  before(async () => {
    url = await testDatabaseUrl();
  });

  it('refuses a database not in UTF8 before it writes anything', async function () {
    await withScratchDatabase(this, 'credits_latin1', `ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'`, async (latin1, name) => {
      const run = await credits(['migrate'], { DATABASE_URL: latin1 });
      expect(sentence(run)).to.equal(
        `credits: The database ${name} is in the LATIN1 encoding and credits needs UTF8: create one with CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0 and point DATABASE_URL at it.`,
      );
      const db = new PgClient({ connectionString: latin1 });
      await db.connect();
      try {
        const { rows } = await db.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`);
        expect(rows[0].n, 'tables made before the refusal').to.equal(0);
      } finally {
        await db.end();
      }
    });
  });

  it('names the database it cannot reach, and what to do', async () => {
    const port = await freePort();
    const run = await credits(['migrate'], { DATABASE_URL: `postgres://credits:secret@127.0.0.1:${port}/credits` });
    const said = sentence(run);
    expect(said).to.match(new RegExp(`^credits: Could not open the database at 127\\.0\\.0\\.1:${port}/credits \\(.*ECONNREFUSED.*\\): start it, create it or fix DATABASE_URL\\.$`));
    expect(said, 'the password is not repeated').to.not.include('secret');
  });

  it('says so when the database does not exist', async () => {
    const name = `credits_missing_${randomBytes(4).toString('hex')}`;
    const run = await credits(['tenant', 'create', 'acme'], { DATABASE_URL: Object.assign(new URL(url), { pathname: `/${name}` }).href });
    expect(sentence(run)).to.include(`(database "${name}" does not exist): start it, create it or fix DATABASE_URL.`);
  });

  describe('serve', () => {
    let taken: Awaited<ReturnType<typeof takenPort>>;
    const serveEnv = async (env: Record<string, string>) => ({
      DATABASE_URL: url,
      CREDITS_ADDRESS: `127.0.0.1:${await freePort()}`,
      CREDITS_METRICS_ADDRESS: 'off',
      ...env,
    });

    beforeEach(async () => {
      taken = await takenPort();
    });
    afterEach(async () => {
      await taken.close();
    });

    it('names CREDITS_ADDRESS when its port is taken', async () => {
      const address = `127.0.0.1:${taken.port}`;
      const run = await credits(['serve'], await serveEnv({ CREDITS_ADDRESS: address }));
      expect(sentence(run)).to.match(
        new RegExp(`^credits: Could not listen on CREDITS_ADDRESS ${address} \\(.*EADDRINUSE.*\\): stop what listens there or set CREDITS_ADDRESS to a free host:port\\.$`),
      );
    });

    it('names CREDITS_METRICS_ADDRESS when its port is taken', async () => {
      const address = `127.0.0.1:${taken.port}`;
      const run = await credits(['serve'], await serveEnv({ CREDITS_METRICS_ADDRESS: address }));
      expect(sentence(run)).to.match(
        new RegExp(`^credits: Could not listen on CREDITS_METRICS_ADDRESS ${address} \\(.*EADDRINUSE.*\\): stop what listens there, or set CREDITS_METRICS_ADDRESS to a free host:port or to off\\.$`),
      );
    });

    it('tells a taken address before it opens the database (which may take seconds to start or migrate)', async () => {
      const address = `127.0.0.1:${taken.port}`;
      // No database listens there: had it been opened first, that would be the error.
      const nowhere = `postgres://credits@127.0.0.1:${await freePort()}/credits`;
      const grpcTaken = await credits(['serve'], await serveEnv({ DATABASE_URL: nowhere, CREDITS_ADDRESS: address }));
      expect(sentence(grpcTaken)).to.match(new RegExp(`^credits: Could not listen on CREDITS_ADDRESS ${address} \\(.*EADDRINUSE.*\\): stop what listens there`));
      const metricsTaken = await credits(['serve'], await serveEnv({ DATABASE_URL: nowhere, CREDITS_METRICS_ADDRESS: address }));
      expect(sentence(metricsTaken)).to.match(new RegExp(`^credits: Could not listen on CREDITS_METRICS_ADDRESS ${address} \\(.*EADDRINUSE.*\\): stop what listens there`));
      // Free addresses: on to the database, which is not there.
      const free = await credits(['serve'], await serveEnv({ DATABASE_URL: nowhere }));
      expect(sentence(free)).to.match(/^credits: Could not open the database at /);
    });

    it('names the TLS files when they are not PEM', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'credits-tls-'));
      try {
        const file = path.join(dir, 'not-pem');
        fs.writeFileSync(file, 'not a certificate\n');
        const run = await credits(['serve'], await serveEnv({ CREDITS_TLS_CERT: file, CREDITS_TLS_KEY: file }));
        expect(sentence(run)).to.match(
          /^credits: Could not use the TLS files CREDITS_TLS_CERT, CREDITS_TLS_KEY \(.*PEM.*\): give readable PEM files \(certificate chain, its private key\)\.$/,
        );
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
