import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { HealthCheckResponse_ServingStatus } from './health-status';

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'credits.js');

/** A `credits serve` process of its own, for tests that kill or signal it. */
export interface ChildServer {
  address: string;
  process: ChildProcess;
  /** Resolves with the exit code (or signal) when the process ends. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function spawnServer(databaseUrl: string, port: number, env: Record<string, string> = {}): Promise<ChildServer> {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, DATABASE_URL: databaseUrl, CREDITS_ADDRESS: `127.0.0.1:${port}`, LOG_LEVEL: 'warn', CREDITS_EXPIRY_SWEEP_SECONDS: '1',
      // Several run at once: no fixed metrics port unless a test asks for one.
      CREDITS_METRICS_ADDRESS: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const address = `127.0.0.1:${port}`;
  await waitServing(address, exited, () => output);
  return { address, process: child, exited, output: () => output };
}

/** Polls grpc.health.v1 until SERVING (the process must not exit meanwhile). */
async function waitServing(address: string, exited: Promise<unknown>, output: () => string): Promise<void> {
  let dead = false;
  void exited.then(() => (dead = true));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (dead) throw new Error(`credits serve exited before serving:\n${output()}`);
    if ((await healthStatus(address)) === HealthCheckResponse_ServingStatus.SERVING) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`credits serve did not become healthy in 60 s:\n${output()}`);
}

/** One health check; undefined when the server cannot be reached. */
export async function healthStatus(address: string): Promise<string | undefined> {
  const { HealthClient } = await import('./health-status');
  const client = new HealthClient(address, credentials.createInsecure());
  try {
    return await new Promise((resolve) =>
      client.check({ service: '' }, { deadline: Date.now() + 1000 }, (err, res) => resolve(err ? undefined : res.status)),
    );
  } finally {
    client.close();
  }
}
