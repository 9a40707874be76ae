import { randomUUID } from 'node:crypto';
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import pg from 'pg';
import { ErrorInfo } from '../gen/google/rpc/error_details';
import { Status } from '../gen/google/rpc/status';
import { Histogram } from './histogram';
import type { FromLoadGenerator, LoadResult, LoadSpec, ToLoadGenerator } from './protocol';
import { substitute, type SqlUnit } from './sql-recorder';

/**
 * The load generator, forked by the orchestrator (one process per run):
 * keeps `concurrency` calls in flight for warm-up + duration and measures
 * the calls that complete inside the measurement window.
 *
 * - grpc mode: one grpc-js channel; requests are encoded beforehand and
 *   responses are not decoded, so the generator spends its CPU on the
 *   transport only (it shares the machine with what it measures).
 * - sql mode: the recorded SQL of a call, run by a bare `pg` pool.
 */

interface Outcome {
  /** gRPC status name or SQLSTATE; undefined when the call succeeded. */
  error?: string;
  /** The call was answered with one of the target's expected refusals (this reason). */
  refused?: string;
  target: string;
  bytes?: number;
}

const send = (message: FromLoadGenerator) => process.send?.(message);

process.on('message', (message: ToLoadGenerator) => {
  if (message.type !== 'run') return;
  run(message.spec).then(
    (result) => send({ type: 'result', result }),
    (err: unknown) => send({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});

async function run(spec: LoadSpec): Promise<LoadResult> {
  if (spec.mode === 'grpc') {
    const { call, close } = await grpcCaller(spec);
    try {
      return await drive(spec, call);
    } finally {
      close();
    }
  }
  const { call, close } = await sqlCaller(spec);
  try {
    return await drive(spec, call);
  } finally {
    await close();
  }
}

async function grpcCaller(spec: Extract<LoadSpec, { mode: 'grpc' }>) {
  const clients = [spec.address, ...(spec.moreAddresses ?? [])].map((address) => new Client(address, credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 }));
  await Promise.all(clients.map((client) => new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())))));
  // IPC delivers Uint8Arrays; grpc-js writes Buffers.
  const toBuffer = (r: Uint8Array) => Buffer.from(r.buffer, r.byteOffset, r.byteLength);
  const targets = spec.targets.map((t) => ({ ...t, requests: t.requests.map(toBuffer), measured: t.measuredRequests?.map(toBuffer) }));
  // The measured requests replace the warm-up ones when the window starts.
  let measuring = false;
  setTimeout(() => (measuring = true), spec.warmupSec * 1000).unref();
  // Weighted round robin: a schedule of target indexes, repeated.
  const schedule: number[] = [];
  const total = targets.reduce((sum, t) => sum + t.weight, 0);
  targets.forEach((t, k) => {
    for (let n = 0; n < Math.max(1, Math.round((100 * t.weight) / total)); n++) schedule.push(k);
  });
  shuffle(schedule);
  const identity = (b: Buffer) => b;
  const authorization = `Bearer ${spec.apiKey}`;
  let turn = 0;
  const call = (i: number): Promise<Outcome> => {
    const target = targets[schedule[turn++ % schedule.length]!]!;
    const metadata = new Metadata();
    metadata.set('authorization', authorization);
    if (target.idempotencyKeys) metadata.set('idempotency-key', randomUUID());
    const client = clients[i % clients.length]!;
    return new Promise((resolve) =>
      client.makeUnaryRequest<Buffer, Buffer>(
        target.path,
        identity,
        identity,
        (measuring && target.measured ? target.measured : target.requests)[i % target.requests.length]!,
        metadata,
        { deadline: Date.now() + 60_000 },
        (err: ServiceError | null, response?: Buffer) => {
          if (!err) return resolve({ target: target.name, bytes: response?.length });
          const reason = target.expectedRefusals ? reasonOf(err) : undefined;
          if (reason !== undefined && target.expectedRefusals!.includes(reason)) return resolve({ target: target.name, refused: reason });
          resolve({ error: status[err.code] ?? String(err.code), target: target.name });
        },
      ),
    );
  };
  return { call, close: () => clients.forEach((client) => client.close()) };
}

/** The ErrorInfo reason of a failed call (google.rpc.Status details), if any. */
function reasonOf(err: ServiceError): string | undefined {
  const raw = err.metadata?.get('grpc-status-details-bin')[0];
  if (!(raw instanceof Buffer)) return undefined;
  const info = Status.decode(raw).details.find((any) => any.typeUrl === 'type.googleapis.com/google.rpc.ErrorInfo');
  return info ? ErrorInfo.decode(info.value).reason : undefined;
}

async function sqlCaller(spec: Extract<LoadSpec, { mode: 'sql' }>) {
  const pool = new pg.Pool({ connectionString: spec.databaseUrl, max: spec.poolSize, application_name: 'credits-bench-sql' });
  // Open every connection before the clock starts, as the server's pool has.
  const clients = await Promise.all(Array.from({ length: spec.poolSize }, () => pool.connect()));
  clients.forEach((c) => c.release());
  const runUnit = async (unit: SqlUnit, actual: string[], results: Array<Record<string, unknown> | undefined>) => {
    const query = async (client: pg.Pool | pg.PoolClient, k: number) => {
      const st = unit.statements[k]!;
      const result = await client.query({ text: st.text, ...(st.name ? { name: st.name } : {}), values: substitute(st, spec.sample, actual, results) });
      results[st.index] = result.rows[0] as Record<string, unknown> | undefined;
    };
    if (!unit.transaction) {
      await query(pool, 0);
      return;
    }
    const client = await pool.connect();
    try {
      for (let k = 0; k < unit.statements.length; k++) await query(client, k);
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  };
  const call = async (i: number): Promise<Outcome> => {
    const actual = spec.variants[i % spec.variants.length] ?? [];
    try {
      const results: Array<Record<string, unknown> | undefined> = [];
      for (const unit of spec.units) await runUnit(unit, actual, results);
      return { target: 'sql' };
    } catch (err) {
      return { error: (err as { code?: string }).code ?? 'CLIENT_ERROR', target: 'sql' };
    }
  };
  return { call, close: () => pool.end() };
}

async function drive(spec: LoadSpec, call: (i: number) => Promise<Outcome>): Promise<LoadResult> {
  send({ type: 'ready' });
  const histogram = new Histogram();
  const second = new Histogram();
  const errors: Record<string, number> = {};
  const refused: Record<string, number> = {};
  const perTarget: Record<string, { calls: number; errors: number }> = {};
  let secondErrors = 0;
  let bytes = 0;
  let bytesCount = 0;

  const start = performance.now();
  const windowStart = start + spec.warmupSec * 1000;
  const windowEnd = windowStart + spec.durationSec * 1000;
  let windowEnded = false;
  const endWindow = () => {
    if (windowEnded) return;
    windowEnded = true;
    send({ type: 'window-end' });
  };
  const startTimer = setTimeout(() => send({ type: 'window-start' }), spec.warmupSec * 1000);
  const endTimer = setTimeout(endWindow, spec.warmupSec * 1000 + spec.durationSec * 1000);
  let tick = 0;
  const progress = setInterval(() => {
    tick++;
    send({
      type: 'progress',
      second: tick,
      phase: tick <= spec.warmupSec ? 'warm-up' : 'measure',
      calls: second.count,
      errors: secondErrors,
      p50: second.quantile(0.5),
      p99: second.quantile(0.99),
    });
    second.reset();
    secondErrors = 0;
  }, 1000);

  let next = 0;
  const worker = async () => {
    while (performance.now() < windowEnd) {
      const i = next++;
      const began = performance.now();
      const outcome = await call(i);
      const ended = performance.now();
      const micros = (ended - began) * 1000;
      second.record(micros);
      if (outcome.error) secondErrors++;
      if (ended < windowStart || ended > windowEnd) continue;
      const counts = (perTarget[outcome.target] ??= { calls: 0, errors: 0 });
      counts.calls++;
      if (outcome.error) {
        errors[outcome.error] = (errors[outcome.error] ?? 0) + 1;
        counts.errors++;
      } else {
        if (outcome.refused) refused[outcome.refused] = (refused[outcome.refused] ?? 0) + 1;
        histogram.record(micros);
        if (outcome.bytes !== undefined) {
          bytes += outcome.bytes;
          bytesCount++;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  // The workers stop at the window's end; its timer may not have fired yet.
  clearTimeout(endTimer);
  endWindow();
  clearTimeout(startTimer);
  clearInterval(progress);
  const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
  return {
    calls: histogram.count + errorCount,
    seconds: spec.durationSec,
    histogram: histogram.toJSON(),
    errors,
    ...(Object.keys(refused).length > 0 ? { refused } : {}),
    perTarget,
    responseBytes: bytesCount > 0 ? bytes / bytesCount : undefined,
  };
}

function shuffle(items: number[]): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
}
