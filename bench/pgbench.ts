import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Histogram } from './histogram';
import type { LoadResult } from './protocol';

/** The pgbench on PATH and its version, or undefined when there is none. */
export function findPgbench(): { path: string; version: string } | undefined {
  try {
    const version = execFileSync('pgbench', ['--version'], { encoding: 'utf8' }).trim();
    const where = execFileSync('sh', ['-c', 'command -v pgbench'], { encoding: 'utf8' }).trim();
    return { path: where, version };
  } catch {
    return undefined;
  }
}

export interface PgbenchOptions {
  script: string;
  /** -D variables (`tenant` is always set). */
  defines: Record<string, string>;
  databaseUrl: string;
  clients: number;
  threads: number;
  warmupSec: number;
  durationSec: number;
  /** Called once per second with pgbench's own progress figures. */
  onProgress(second: number, tps: number, latencyMs: number): void;
  /** Called when the measurement window starts (once) and at every later progress line. */
  onWindow(event: 'start' | 'tick', pid: number): void;
}

/**
 * Runs pgbench -M prepared for warm-up + duration with per-transaction
 * logging, and answers the transactions that completed in the measurement
 * window with their latencies, like the load generator does.
 */
export async function runPgbench(options: PgbenchOptions): Promise<LoadResult & { command: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'credits-bench-pgbench-'));
  try {
    const scriptFile = path.join(dir, 'script.sql');
    fs.writeFileSync(scriptFile, options.script);
    const args = [
      '-n', // no vacuum of pgbench's own tables (it has none here)
      '-M', 'prepared',
      '-c', String(options.clients),
      '-j', String(options.threads),
      '-T', String(options.warmupSec + options.durationSec),
      '-P', '1',
      '-l', `--log-prefix=${path.join(dir, 'txn')}`,
      '-f', scriptFile,
      ...Object.entries(options.defines).flatMap(([k, v]) => ['-D', `${k}=${v}`]),
      options.databaseUrl,
    ];
    const child = spawn('pgbench', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let windowStarted = false;
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => {
      const text = c.toString();
      stderr += text;
      for (const m of text.matchAll(/progress: ([\d.]+) s, ([\d.]+) tps, lat ([\d.]+) ms/g)) {
        const second = Math.round(Number(m[1]));
        options.onProgress(second, Number(m[2]), Number(m[3]));
        // The last line comes as pgbench disconnects: backends gone by then would drop out of the CPU figures.
        if (second >= options.warmupSec && second < options.warmupSec + options.durationSec) {
          options.onWindow(windowStarted ? 'tick' : 'start', child.pid!);
          windowStarted = true;
        }
      }
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    // pgbench words it "client N aborted in command …" or "client N script M aborted in command …".
    const abortLines = [...stderr.matchAll(/client \d+ (?:script \d+ )?aborted[^\n]*/g)].map((m) => m[0]);
    const aborted = abortLines.length;
    if (code !== 0 && aborted === 0) throw new Error(`pgbench exited with ${code}: ${stderr.trim().split('\n').slice(-5).join('\n')}`);

    // Per-transaction log lines: client_id transaction_no latency_us script_no epoch_s epoch_us
    const completions: Array<[number, number]> = [];
    let failed = 0;
    for (const file of fs.readdirSync(dir).filter((f) => f.startsWith('txn'))) {
      for (const line of fs.readFileSync(path.join(dir, file), 'utf8').split('\n')) {
        const f = line.split(' ');
        if (f.length < 6) continue;
        const at = Number(f[4]) + Number(f[5]) / 1e6;
        if (!/^\d+$/.test(f[2]!)) {
          failed++;
          continue;
        }
        completions.push([at, Number(f[2])]);
      }
    }
    if (completions.length === 0) throw new Error(`pgbench logged no transaction: ${stderr.trim().split('\n').slice(-5).join('\n')}`);
    let first = Infinity;
    let last = 0;
    for (const [at] of completions) {
      if (at < first) first = at;
      if (at > last) last = at;
    }
    const windowStart = first + options.warmupSec;
    const windowEnd = Math.min(windowStart + options.durationSec, last);
    const histogram = new Histogram();
    for (const [at, latency] of completions) if (at >= windowStart && at <= windowEnd) histogram.record(latency);
    const errors: Record<string, number> = {};
    // With why the first one aborted: a baseline that fails must say what its SQL did.
    if (aborted > 0) errors[`ABORTED_CLIENTS (${abortLines[0]!.replace(/\s+/g, ' ').slice(0, 300)})`] = aborted;
    if (failed > 0) errors.FAILED_TRANSACTIONS = failed;
    return {
      calls: histogram.count,
      seconds: Math.max(windowEnd - windowStart, 0.001),
      histogram: histogram.toJSON(),
      errors,
      perTarget: {},
      responseBytes: undefined,
      command: `pgbench ${args.slice(0, -1).map((a) => (a.startsWith('--log-prefix') || a === scriptFile ? path.basename(a) : a)).join(' ')} <url>`,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
