import { fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import type { EventConsumersResult, FromEchoServer, FromEventConsumers, FromLoadGenerator, LoadResult, LoadSpec, ToEchoServer, ToEventConsumers } from './protocol';

const ROOT = path.join(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'credits.js');
/** Node flags the server runs with: those of `npm start`, so that the bench measures the server as it is run. */
export const SERVER_NODE_FLAGS = startScriptNodeFlags(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start);

/** The node flags of package.json's start script (`… node <flags> bin/credits.js serve`). */
export function startScriptNodeFlags(start: string): string[] {
  const match = /(?:^|&& )node((?: --\S+)*) bin\/credits\.js serve$/.exec(start);
  if (!match) throw new Error(`package.json's start script does not end "node [flags] bin/credits.js serve": ${start}`);
  return match[1]!.split(' ').filter((flag) => flag !== '');
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

export interface ServiceProcess {
  pid: number;
  address: string;
  /** SIGTERM, then wait for the exit (SIGKILL after 20 s). */
  stop(): Promise<void>;
  /** The last lines the server logged at warn or above. */
  problems(): string[];
}

/**
 * `node <npm start's flags> bin/credits.js serve` as a process of its own. Its log (pino JSON on
 * stdout) goes to `logFile`, not through this process, so reading it costs
 * the benchmark nothing.
 */
export async function startService(options: {
  databaseUrl: string;
  apiKey: string;
  env: Record<string, string>;
  logFile: string;
  cpuProfile?: { dir: string; name: string };
}): Promise<ServiceProcess> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const fd = fs.openSync(options.logFile, 'a');
  const nodeArgs = options.cpuProfile ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfile.dir}`, `--cpu-prof-name=${options.cpuProfile.name}`] : [];
  // For A/B runs of server flags: BENCH_SERVER_NODE_FLAGS="--max-semi-space-size=16".
  const extra = (process.env.BENCH_SERVER_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...extra, ...nodeArgs, BIN, 'serve'], {
    // Metrics on, as deployed, on a port of its own (variants turn them off).
    env: { ...process.env, CREDITS_METRICS_ADDRESS: '127.0.0.1:0', ...options.env, DATABASE_URL: options.databaseUrl, CREDITS_ADDRESS: address },
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const problems = () => {
    const text = fs.readFileSync(options.logFile, 'utf8');
    return text
      .split('\n')
      .filter((l) => /"level":(4|5|6)\d/.test(l) || (l !== '' && !l.startsWith('{')))
      .slice(-10);
  };
  await waitServing(address, options.apiKey, exited, problems);
  return {
    pid: child.pid!,
    address,
    problems,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/** Polls with an authenticated GetCustomerBalance until the service answers it. */
async function waitServing(address: string, apiKey: string, exited: Promise<number | null>, log: () => string[]): Promise<void> {
  let dead = false;
  void exited.then(() => (dead = true));
  const client = new Client(address, credentials.createInsecure());
  const identity = (b: Buffer) => b;
  try {
    const deadline = Date.now() + 60_000;
    let lastError = '';
    while (Date.now() < deadline) {
      if (dead) {
        const lines = log();
        throw new Error(`credits serve exited before serving: ${lines.find((l) => !l.startsWith('{')) ?? lines[0] ?? 'no output'}\n${lines.join('\n')}`);
      }
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${apiKey}`);
      // GetCustomerBalanceRequest { customer_id: "c0" }: field 1, length 2.
      const ok = await new Promise<boolean>((resolve) =>
        client.makeUnaryRequest(
          '/credits.v1.PromotionalCreditService/GetCustomerBalance',
          identity,
          identity,
          Buffer.from([0x0a, 0x02, 0x63, 0x30]),
          metadata,
          { deadline: Date.now() + 1000 },
          (err) => {
            lastError = err?.message ?? '';
            resolve(!err);
          },
        ),
      );
      if (ok) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`credits serve did not answer in 60 s (${lastError}):\n${log().join('\n')}`);
  } finally {
    client.close();
  }
}

export interface EchoProcess {
  pid: number;
  address: string;
  respondWith(response: Uint8Array): Promise<void>;
  stop(): Promise<void>;
}

export async function startEcho(): Promise<EchoProcess> {
  const child = fork(path.join(__dirname, 'echo-server.js'), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // One exit listener for the process's life: one per message awaited piled
  // up (MaxListenersExceededWarning after ten scenarios).
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const next = () =>
    new Promise<FromEchoServer>((resolve, reject) => {
      child.once('message', resolve);
      void exited.then((code) => reject(new Error(`echo server exited (${code})`)));
    });
  const listening = await next();
  if (listening.type !== 'listening') throw new Error('echo server did not start');
  return {
    pid: child.pid!,
    address: `127.0.0.1:${listening.port}`,
    respondWith: async (response) => {
      const ack = next();
      child.send({ type: 'respond-with', response } satisfies ToEchoServer);
      await ack;
    },
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Forks a load generator for one run. `events` sees progress and the window
 * boundaries as they happen (the orchestrator takes its CPU snapshots there).
 */
export async function runLoad(spec: LoadSpec, events: (message: FromLoadGenerator, pid: number) => void): Promise<LoadResult & { pid: number }> {
  const child: ChildProcess = fork(path.join(__dirname, 'load-generator.js'), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pid = child.pid!;
  try {
    return await new Promise((resolve, reject) => {
      child.on('message', (message: FromLoadGenerator) => {
        if (message.type === 'result') resolve({ ...message.result, pid });
        else if (message.type === 'failed') reject(new Error(`load generator failed: ${message.message}`));
        else events(message, pid);
      });
      child.once('exit', (code) => reject(new Error(`load generator exited (${code}) before answering`)));
      child.send({ type: 'run', spec });
    });
  } finally {
    if (child.exitCode === null) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await gone;
    }
  }
}

export interface EventConsumersProcess {
  pid: number;
  /** Start (or stop) counting lag: the load generator's measurement window. */
  window(edge: 'start' | 'end'): void;
  /** Waits until every stream has `expected` events (or `timeoutMs`), answers, and ends the process. */
  finish(expected: number, timeoutMs: number): Promise<EventConsumersResult>;
  stop(): Promise<void>;
}

/** Forks the event stream consumers and resolves once all `count` streams are open (after `afterCursor`). */
export async function startEventConsumers(options: { address: string; apiKey: string; count: number; afterCursor: string }): Promise<EventConsumersProcess> {
  const child = fork(path.join(__dirname, 'event-consumers.js'), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const next = () =>
    new Promise<FromEventConsumers>((resolve, reject) => {
      child.once('message', resolve);
      void exited.then(() => reject(new Error('event consumers exited')));
    });
  const send = (message: ToEventConsumers) => child.send(message);
  const ready = next();
  send({ type: 'start', ...options });
  if ((await ready).type !== 'ready') throw new Error('event consumers did not start');
  const stop = async () => {
    if (child.exitCode !== null) return;
    child.kill('SIGTERM');
    await exited;
  };
  return {
    pid: child.pid!,
    window: (edge) => send({ type: edge === 'start' ? 'window-start' : 'window-end' }),
    finish: async (expected, timeoutMs) => {
      const answer = next();
      send({ type: 'finish', expected, timeoutMs });
      const message = await answer;
      await stop();
      if (message.type !== 'result') throw new Error(`event consumers failed: ${message.type === 'failed' ? message.message : message.type}`);
      return message.result;
    },
    stop,
  };
}
