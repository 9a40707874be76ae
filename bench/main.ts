import { execFile } from 'node:child_process';
import { status } from '@grpc/grpc-js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderChart, renderRssChart } from './chart';
import { renderProfileMarkdown, summarizeProfile } from './cpu-profile-summary';
import { checkpoint, openBenchDatabase, type BenchDatabase } from './database';
import { ECHO_PATH } from './echo-server';
import { int, mb, ms, pct, ratio } from './format';
import { loadRpc, type LoadedRpc } from './gen';
import { parseOptions, USAGE, UsageError, type BenchOptions } from './options';
import { findPgbench, runPgbench } from './pgbench';
import { CpuWindow, describeMachine, peakRssBytes, rssBytes, type WindowCpu } from './proc-stats';
import { runLoad, startEcho, startEventConsumers, startService, type EchoProcess, type EventConsumersProcess } from './processes';
import type { FromLoadGenerator, LoadResult, LoadSpec } from './protocol';
import { startRecordingServer, type SampleCall } from './recording-server';
import { describeComparison, describeEchoRounds, perCall, renderMarkdown, renderTextTable, toRunReport, type BenchReport, type EventStreamsReport, type RunReport, type ScenarioReport } from './report';
import { COMPARISONS, ECHO_TARGETS, SCENARIOS, type BenchContext, type Scenario, type SetupEnv } from './scenarios';
import { startOtlpSink } from './otlp-sink';
import { seed } from './seed';
import { analyzeRss, renderSoakMarkdown, type SoakSummary } from './soak-report';
import { summarizeStatement, toPgbenchScript, toUnits, unmatchedVarying } from './sql-recorder';
import { Histogram } from './histogram';
import { loadCursorCodec } from '../src/events/events.service';

const ROOT = path.join(__dirname, '..', '..');
const log = (msg: string) => console.log(msg);

/** A scenario ready to measure: its method, its requests and one recorded call. */
interface Prepared {
  scenario: Scenario;
  rpc: LoadedRpc;
  requests: Uint8Array[];
  /** The measurement window's requests, when the scenario has its own (measuredRequest). */
  measuredRequests?: Uint8Array[];
  sample: SampleCall;
}

interface Session {
  options: BenchOptions;
  stamp: string;
  db: BenchDatabase;
  ctx: BenchContext;
  env: SetupEnv;
  prepared: Prepared[];
  /** Reports of scenarios that could not be prepared (skipped or failed). */
  unprepared: ScenarioReport[];
  /** Folder of the servers' logs (one file per server process), removed after a clean run. */
  logDir: string;
  background: { busyPercent: number | undefined; loadavg: number[] };
}

export async function main(argv: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    const parsed = parseOptions(argv);
    if (parsed === 'help') {
      console.log(USAGE);
      return 0;
    }
    options = parsed;
    selectScenarios(options); // unknown names are a usage error, before anything starts
  } catch (err) {
    if (err instanceof UsageError || (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      console.error(`bench: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  const session = await prepareSession(options);
  let code = 1;
  try {
    code = options.soak ? await soak(session) : await bench(session);
    return code;
  } finally {
    await session.db.close();
    // The server's log is kept when something went wrong.
    if (code === 0) fs.rmSync(session.logDir, { recursive: true, force: true });
    else log(`server logs kept in ${session.logDir}`);
  }
}

// ---------------------------------------------------------------------------
// Preparation: database, tenant, data, scenario setups, recorded calls

async function prepareSession(options: BenchOptions): Promise<Session> {
  const started = new Date();
  const stamp = started.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  const background = await backgroundLoad();
  log(
    `machine: ${os.cpus().length} cores, busy ${pct(background.busyPercent)} before the run (load average ${background.loadavg.map((l) => l.toFixed(2)).join(' ')})`,
  );
  const db = await openBenchDatabase(log);
  try {
    log(`database: ${db.embedded ? 'embedded' : 'DATABASE_URL'}, PostgreSQL ${db.serverVersion}; seeding`);
    const ctx = await seed(db.dataSource, `bench-${stamp.toLowerCase().replace(/[^a-z0-9]/g, '')}`);
    const recording = await startRecordingServer(db.dataSource, ctx.apiKey);
    const env: SetupEnv = {
      ctx,
      sql: async (text, values) => db.dataSource.query(text, values),
      call: recording.call,
    };
    const prepared: Prepared[] = [];
    const unprepared: ScenarioReport[] = [];
    try {
      for (const scenario of selectScenarios(options)) {
        const base: ScenarioReport = { name: scenario.name, title: scenario.title, status: 'skipped', runs: [], ratios: [], checkProblems: [] };
        if (options.soak && !(scenario.soakWeight && scenario.soakWeight > 0)) continue;
        const rpc = loadRpc(scenario.rpc);
        if ('missing' in rpc) {
          unprepared.push({ ...base, note: `${rpc.missing}; skipped until the service lands` });
          log(`skip ${scenario.name}: ${rpc.missing}`);
          continue;
        }
        if (scenario.variantOf && scenario.variantOf.serverEnv.LOG_LEVEL === options.logLevel) {
          unprepared.push({ ...base, note: `the main runs already use LOG_LEVEL=${options.logLevel}` });
          continue;
        }
        try {
          await scenario.setup?.(env);
          const requests = encodeRequests(rpc, scenario, scenario.request, ctx);
          // One unrecorded call first, so connection set-up and first-use work are not in the recording.
          await recording.call(scenario.rpc, scenario.request(1 % scenario.cycle, ctx));
          const sample = await recording.record(scenario.rpc, scenario.request(0, ctx));
          const measuredRequests = scenario.measuredRequest
            ? encodeRequests(rpc, scenario, scenario.measuredRequest, ctx)
            : undefined;
          prepared.push({ scenario, rpc, requests, sample, ...(measuredRequests ? { measuredRequests } : {}) });
        } catch (err) {
          if ((err as { code?: unknown }).code === status.UNIMPLEMENTED) {
            // Generated but not served yet (another service's work in progress).
            unprepared.push({ ...base, note: `the server does not serve it yet (${(err as Error).message}); skipped until it does` });
            log(`skip ${scenario.name}: the server does not serve it yet`);
            continue;
          }
          unprepared.push({ ...base, status: 'failed', note: `setup or sample call failed: ${(err as Error).message}` });
          log(`FAILED ${scenario.name}: setup or sample call failed: ${(err as Error).message}`);
        }
      }
    } finally {
      await recording.close();
    }
    const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'credits-bench-'));
    return { options, stamp, db, ctx, env, prepared, unprepared, logDir, background };
  } catch (err) {
    await db.close();
    throw err;
  }
}

function selectScenarios(options: BenchOptions): Scenario[] {
  if (options.scenarios.length === 0) return SCENARIOS;
  // A scenario's own name picks that one (`add`, not every add-…); other text is a prefix (`redeem`).
  const picks = (s: Scenario, f: string): boolean => s.name === f || (s.name.startsWith(f) && !SCENARIOS.some((x) => x.name === f));
  const chosen = SCENARIOS.filter((s) => options.scenarios.some((f) => picks(s, f)));
  const unknown = options.scenarios.filter((f) => !SCENARIOS.some((s) => s.name === f || s.name.startsWith(f)));
  if (unknown.length > 0) throw new UsageError(`unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  return chosen;
}

/** How busy the machine is before we add load (other work makes numbers noisy). */
async function backgroundLoad(): Promise<{ busyPercent: number | undefined; loadavg: number[] }> {
  const window = new CpuWindow({}, undefined);
  window.begin();
  await new Promise((r) => setTimeout(r, 1000));
  return { busyPercent: window.end().machine, loadavg: os.loadavg() };
}

// ---------------------------------------------------------------------------
// Measuring

/** Runs a load generator, printing one progress line per second; CPU is measured inside the window. */
async function measureLoad(
  label: string,
  spec: LoadSpec,
  /** The measured process, or processes (their CPU is added up). */
  processPid: number | number[] | undefined,
  postmasterPid: number | undefined,
  hooks: { windowStart?(): void; windowEnd?(): void; tick?(second: number): string; alsoWatch?: Record<string, number> } = {},
): Promise<{ result: LoadResult; cpu: WindowCpu | undefined }> {
  let window: CpuWindow | undefined;
  let cpu: WindowCpu | undefined;
  const total = spec.warmupSec + spec.durationSec;
  const events = (message: FromLoadGenerator, loadgenPid: number) => {
    if (message.type === 'window-start') {
      const measured = processPid === undefined ? [loadgenPid] : [processPid].flat();
      window = new CpuWindow(
        { ...Object.fromEntries(measured.map((pid, k) => [`process${k}`, pid])), ...(processPid === undefined ? {} : { loadgen: loadgenPid }), ...hooks.alsoWatch },
        postmasterPid,
      );
      window.begin();
      hooks.windowStart?.();
    } else if (message.type === 'window-end') {
      cpu = window?.end();
      if (cpu) {
        const parts = Object.entries(cpu.processes).filter(([name]) => /^process\d+$/.test(name));
        cpu.processes.process = parts.some(([, v]) => v === undefined) ? undefined : parts.reduce((sum, [, v]) => sum + v!, 0);
        // Of several server processes, the busiest JavaScript thread.
        const threads = Object.entries(cpu.mainThreads).filter(([name]) => /^process\d+$/.test(name));
        cpu.mainThreads.process = threads.some(([, v]) => v === undefined) ? undefined : Math.max(...threads.map(([, v]) => v!));
      }
      hooks.windowEnd?.();
    } else if (message.type === 'progress') {
      const extra = hooks.tick ? `  ${hooks.tick(message.second)}` : '';
      log(
        `  ${label}  ${message.phase.padEnd(7)} ${String(message.second).padStart(3)}/${total} s  ${int(message.calls).padStart(6)} calls/s` +
          `  p50 ${ms(message.p50).padStart(6)} ms  p99 ${ms(message.p99).padStart(6)} ms  errors ${message.errors}${extra}`,
      );
    }
  };
  const result = await runLoad(spec, events);
  return { result, cpu };
}

function printRun(label: string, run: RunReport, unitName = 'units'): void {
  const errors = run.errorCount === 0 ? '0' : Object.entries(run.errors).map(([k, v]) => `${k} ${v}`).join(', ');
  log(
    `  ${label}  => ${int(run.callsPerSec)} calls/s${run.unitsPerSec !== undefined ? ` (${int(run.unitsPerSec)} ${unitName}/s)` : ''}` +
      `  p50 ${ms(run.latencyUs.p50)}  p95 ${ms(run.latencyUs.p95)}  p99 ${ms(run.latencyUs.p99)} ms  errors ${errors}` +
      `  CPU ${pct(run.cpu.process)}  loadgen ${pct(run.cpu.loadgen)}  pg ${pct(run.cpu.postgres)}  box ${pct(run.cpu.machine)}` +
      `  peak RSS ${mb(run.peakRssBytes)} MB`,
  );
}

function serverEnv(options: BenchOptions, extra: Record<string, string> = {}): Record<string, string> {
  return { LOG_LEVEL: options.logLevel, CREDITS_DB_POOL_SIZE: String(options.poolSize), ...extra };
}

/** A scenario's requests for one cycle, encoded once so the load generator only sends bytes. */
function encodeRequests(rpc: LoadedRpc, scenario: Scenario, request: Scenario['request'], ctx: BenchContext): Uint8Array[] {
  return Array.from({ length: scenario.cycle }, (_, i) => new Uint8Array(rpc.encodeRequest(request(i, ctx))));
}

async function measureService(session: Session, p: Prepared, profileDir: string | undefined): Promise<{ run: RunReport; problems: string[] }> {
  const { options, db, ctx } = session;
  const variant = p.scenario.variantOf;
  if (p.scenario.setupEachRun) {
    // What the last run used up (captured holds) is made again, and the
    // requests with it; before the first run too, since the sample calls
    // that recorded its SQL used up two (their holds answered
    // HOLD_NOT_ACTIVE in the warm-up).
    await p.scenario.setup!(session.env);
    p.requests = encodeRequests(p.rpc, p.scenario, p.scenario.request, ctx);
  }
  const sink = variant?.otlpReceiver ? await startOtlpSink() : undefined;
  const servers: Awaited<ReturnType<typeof startService>>[] = [];
  try {
    for (let k = 0; k < (variant?.processes ?? 1); k++) {
      servers.push(
        await startService({
          databaseUrl: db.url,
          apiKey: ctx.apiKey,
          env: serverEnv(options, { ...variant?.serverEnv, ...(sink ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint } : {}) }),
          logFile: path.join(session.logDir, `${p.scenario.name}${k === 0 ? '' : `-${k + 1}`}.log`),
          cpuProfile: profileDir ? { dir: profileDir, name: `${p.scenario.name}${k === 0 ? '' : `-${k + 1}`}.cpuprofile` } : undefined,
        }),
      );
    }
  } catch (err) {
    for (const s of servers) await s.stop();
    await sink?.close();
    throw err;
  }
  const server = servers[0]!;
  let streams: { consumers: EventConsumersProcess; horizon: string } | undefined;
  try {
    await checkpoint(db.dataSource);
    if (p.scenario.eventStreams) streams = await attachEventStreams(session, server.address, p.scenario.eventStreams);
    const subject = variant ? `service ${variant.label}` : 'service';
    const label = `${p.scenario.name} · ${subject}`;
    const { result, cpu } = await measureLoad(
      label,
      {
        mode: 'grpc',
        address: server.address,
        moreAddresses: servers.slice(1).map((s) => s.address),
        apiKey: ctx.apiKey,
        targets: [
          {
            name: p.scenario.name,
            path: p.rpc.method.path,
            requests: p.requests,
            weight: 1,
            idempotencyKeys: p.scenario.idempotencyKeys,
            measuredRequests: p.measuredRequests,
            expectedRefusals: p.scenario.expectedRefusals,
          },
        ],
        concurrency: options.concurrency,
        warmupSec: options.warmupSec,
        durationSec: options.durationSec,
      },
      servers.map((s) => s.pid),
      db.postmasterPid,
      streams
        ? { windowStart: () => streams!.consumers.window('start'), windowEnd: () => streams!.consumers.window('end'), alsoWatch: { consumers: streams.consumers.pid } }
        : {},
    );
    const peaks = servers.map((s) => peakRssBytes(s.pid) ?? 0); // read while they run
    // The consumers catch up with what the run wrote while the servers still serve them.
    const eventStreams = streams ? await eventStreamsReport(session, streams, result.seconds, cpu?.processes.consumers) : undefined;
    // Stopped here (not only in finally) so that the spans flushed at shutdown are counted too.
    for (const s of servers) await s.stop();
    const exported = sink?.received();
    const refused = Object.entries(result.refused ?? {});
    const notes = [
      ...(refused.length > 0
        ? [`answered in the window: ${int(result.calls - refused.reduce((n, [, v]) => n + v, 0) - Object.values(result.errors).reduce((a, b) => a + b, 0))} OK and ${refused.map(([k, v]) => `${int(v)} ${k}`).join(', ')} (expected refusals: counted as answered calls, not errors)`]
        : []),
      ...(servers.length > 1 ? [`${servers.length} server processes, calls round-robin; CPU is theirs added up, peak RSS the largest`] : []),
      ...(exported ? [`spans exported to a local OTLP/HTTP receiver over the run and at shutdown: ${exported.requests} requests, ${mb(exported.bytes)} MB`] : []),
    ];
    const peak = Math.max(...peaks);
    const run = toRunReport(subject, 'service', result, cpu, p.scenario.units?.perCall, { peakRssBytes: peak > 0 ? peak : undefined, ...(notes.length ? { note: notes.join('; ') } : {}) });
    if (eventStreams) run.eventStreams = eventStreams;
    printRun(label, run, p.scenario.units?.name);
    if (refused.length > 0) log(`    ${notes[0]}`);
    if (exported) log(`    ${notes[notes.length - 1]}`);
    const problems = run.errorCount > 0 ? servers.flatMap((s) => s.problems()) : [];
    for (const line of problems) log(`    server: ${line.slice(0, 300)}`);
    return { run, problems };
  } finally {
    await streams?.consumers.stop();
    for (const s of servers) await s.stop();
    await sink?.close();
  }
}

/**
 * Opens `count` StreamEvents consumers on the server, from the horizon now
 * (what live_only does, but with a position the orchestrator knows, so that
 * it can count what they should all receive).
 */
async function attachEventStreams(session: Session, address: string, count: number): Promise<{ consumers: EventConsumersProcess; horizon: string }> {
  const { db, ctx } = session;
  const [{ horizon }] = (await db.dataSource.query(`SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon`)) as Array<{ horizon: string }>;
  const afterCursor = (await loadCursorCodec(db.dataSource)).encode(ctx.tenantId, { xid: BigInt(horizon!), position: 0n });
  const consumers = await startEventConsumers({ address, apiKey: ctx.apiKey, count, afterCursor });
  return { consumers, horizon: horizon! };
}

/** Waits for the consumers to receive everything the run wrote (a hang guard of 30 s), then reports lag and completeness. */
async function eventStreamsReport(
  session: Session,
  streams: { consumers: EventConsumersProcess; horizon: string },
  seconds: number,
  consumersCpu: number | undefined,
): Promise<EventStreamsReport> {
  const [{ expected }] = (await session.db.dataSource.query(
    `SELECT count(*)::int AS expected FROM events WHERE tenant_id = $1 AND (xid, position) > ($2::xid8, 0)`,
    [session.ctx.tenantId, streams.horizon],
  )) as Array<{ expected: number }>;
  const result = await streams.consumers.finish(expected!, 30_000);
  const lag = Histogram.fromJSON(result.lag);
  const report: EventStreamsReport = {
    streams: result.streams,
    lagUs: { p50: lag.quantile(0.5), p99: lag.quantile(0.99), max: lag.max },
    eventsPerSecPerStream: result.inWindow.reduce((a, b) => a + b, 0) / result.streams / seconds,
    expected: expected!,
    received: result.received,
    duplicates: result.duplicates,
    errors: result.errors,
    consumersCpu,
  };
  log(
    `  event streams: ${report.streams} × ${int(report.eventsPerSecPerStream)} events/s, lag p50 ${ms(report.lagUs.p50)} ms p99 ${ms(report.lagUs.p99)} ms max ${ms(report.lagUs.max)} ms; ` +
      `received ${report.received.join('/')} of ${report.expected}, duplicates ${report.duplicates.join('/')}, consumers CPU ${pct(consumersCpu)}`,
  );
  return report;
}

/** What an event stream run got wrong: a stream that missed an event, saw one twice, or failed. */
function eventStreamProblems(report: EventStreamsReport): string[] {
  const problems: string[] = [];
  report.received.forEach((n, i) => {
    if (n !== report.expected) problems.push(`event stream ${i + 1} received ${n} of the ${report.expected} events written`);
  });
  report.duplicates.forEach((n, i) => {
    if (n > 0) problems.push(`event stream ${i + 1} received ${n} events twice`);
  });
  return [...problems, ...report.errors.map((e) => `an event stream failed: ${e}`)];
}

async function measureEcho(session: Session, p: Prepared, echo: EchoProcess): Promise<RunReport> {
  const { options, db, ctx } = session;
  await echo.respondWith(new Uint8Array(p.sample.response));
  const label = `${p.scenario.name} · echo`;
  const { result, cpu } = await measureLoad(
    label,
    {
      mode: 'grpc',
      address: echo.address,
      apiKey: ctx.apiKey,
      targets: [{ name: p.scenario.name, path: ECHO_PATH, requests: p.requests, weight: 1 }],
      concurrency: options.concurrency,
      warmupSec: options.warmupSec,
      durationSec: options.durationSec,
    },
    echo.pid,
    db.postmasterPid,
  );
  const run = toRunReport('echo', 'echo', result, cpu, p.scenario.units?.perCall, {
    peakRssBytes: peakRssBytes(echo.pid),
    note: `same request bytes and metadata; answers the recorded ${p.sample.response.length}-byte response`,
  });
  printRun(label, run, p.scenario.units?.name);
  return run;
}

async function measureSql(session: Session, p: Prepared): Promise<RunReport> {
  const { options, db, ctx } = session;
  await checkpoint(db.dataSource);
  const label = `${p.scenario.name} · same SQL (pg)`;
  const sample = p.scenario.varying(0, ctx);
  const { result, cpu } = await measureLoad(
    label,
    {
      mode: 'sql',
      databaseUrl: db.url,
      poolSize: options.poolSize,
      units: toUnits(p.sample.statements),
      sample,
      variants: Array.from({ length: sample.length === 0 ? 1 : p.scenario.cycle }, (_, i) => p.scenario.varying(i, ctx)),
      concurrency: options.concurrency,
      warmupSec: options.warmupSec,
      durationSec: options.durationSec,
    },
    undefined,
    db.postmasterPid,
  );
  const run = toRunReport('same SQL (pg)', 'sql', result, cpu, p.scenario.units?.perCall, {
    note: `pg Pool of ${options.poolSize}, ${options.concurrency} calls in flight, the recorded statements of one call`,
  });
  printRun(label, run, p.scenario.units?.name);
  return run;
}

async function measurePgbench(session: Session, p: Prepared, subject: string, script: string, defines: Record<string, string>): Promise<RunReport> {
  const { options, db, ctx } = session;
  await checkpoint(db.dataSource);
  const label = `${p.scenario.name} · ${subject}`;
  let window: CpuWindow | undefined;
  let cpu: WindowCpu | undefined;
  const total = options.warmupSec + options.durationSec;
  const result = await runPgbench({
    script,
    defines: { tenant: ctx.tenantId, ...defines },
    databaseUrl: db.url,
    clients: options.poolSize,
    threads: Math.min(options.poolSize, os.cpus().length),
    warmupSec: options.warmupSec,
    durationSec: options.durationSec,
    onProgress: (second, tps, latency) =>
      log(`  ${label}  ${(second <= options.warmupSec ? 'warm-up' : 'measure').padEnd(7)} ${String(second).padStart(3)}/${total} s  ${int(tps).padStart(6)} tps      mean ${latency.toFixed(2)} ms`),
    onWindow: (event, pid) => {
      if (event === 'start') {
        window = new CpuWindow({ process: pid }, db.postmasterPid);
        window.begin();
      } else {
        cpu = window?.end();
      }
    },
  });
  const run = toRunReport(subject, 'pgbench', result, cpu, p.scenario.units?.perCall, { note: result.command });
  printRun(label, run, p.scenario.units?.name);
  return run;
}

async function bench(session: Session): Promise<number> {
  const { options, db, ctx, stamp } = session;
  const startedAt = new Date().toISOString();
  const pgbench = options.baselines.has('pgbench') ? findPgbench() : undefined;
  const notes: string[] = [];
  if (options.baselines.has('pgbench') && !pgbench) notes.push('pgbench is not on PATH: its baselines were skipped.');
  const profileDir = options.cpuProf ? path.join(options.outDir, `${stamp}-profiles`) : undefined;
  if (profileDir) fs.mkdirSync(profileDir, { recursive: true });

  const echo = options.baselines.has('echo') ? await startEcho() : undefined;
  const reports: ScenarioReport[] = [];
  try {
    for (const p of session.prepared) {
      const s = p.scenario;
      log(`\n== ${s.name}: ${s.title}`);
      const report: ScenarioReport = {
        name: s.name,
        title: s.title,
        status: 'ok',
        ...(s.units ? { units: s.units } : {}),
        ...(s.variantOf ? { baselinesOf: s.variantOf.scenario } : {}),
        requestBytes: p.requests.reduce((sum, r) => sum + r.length, 0) / p.requests.length,
        sql: {
          statements: p.sample.statements.map((st) => summarizeStatement(st.text)),
          texts: p.sample.statements.map((st) => st.text),
          transactions: toUnits(p.sample.statements).filter((u) => u.transaction).length,
          unmatched: unmatchedVarying(p.sample.statements, s.varying(0, ctx)),
          generated: p.sample.compared ? p.sample.statements.reduce((n, st) => n + (st.generated?.length ?? 0), 0) : undefined,
        },
        runs: [],
        ratios: [],
        checkProblems: [],
      };
      reports.push(report);
      const attempt = async (what: string, work: () => Promise<RunReport | undefined>) => {
        try {
          const run = await work();
          if (run) report.runs.push(run);
        } catch (err) {
          report.status = 'failed';
          report.note = `${report.note ? `${report.note}; ` : ''}${what} failed: ${(err as Error).message.split('\n')[0]}`;
          log(`  ${s.name} · ${what} FAILED: ${(err as Error).message}`);
        }
      };
      await attempt('service', async () => (await measureService(session, p, profileDir)).run);
      const streamed = report.runs.find((r) => r.eventStreams)?.eventStreams;
      if (streamed) report.checkProblems.push(...eventStreamProblems(streamed));
      if (!s.variantOf) {
        if (echo) await attempt('echo', () => measureEcho(session, p, echo));
        if (options.baselines.has('sql')) {
          if (report.sql!.unmatched.length > 0) notes.push(`${s.name}: the recorded SQL does not contain ${report.sql!.unmatched.join(', ')}, so the same-SQL replay could not vary it`);
          await attempt('same SQL', () => measureSql(session, p));
        }
        if (pgbench) {
          const same = toPgbenchScript(p.sample.statements, s.varying(0, ctx), s.pgbenchVarying);
          if ('impossible' in same) notes.push(`${s.name}: no pgbench same-SQL run (${same.impossible})`);
          else await attempt('pgbench same SQL', () => measurePgbench(session, p, 'pgbench same SQL', same.script, same.defines));
          for (const canonical of s.pgbench ?? []) await attempt(canonical.name, () => measurePgbench(session, p, canonical.name, canonical.script, {}));
        }
      }
      if (s.check) {
        try {
          report.checkProblems.push(...(await s.check(session.env)));
        } catch (err) {
          report.checkProblems.push(`check failed to run: ${(err as Error).message}`);
        }
        for (const problem of report.checkProblems) log(`  ${s.name} CHECK FAILED: ${problem}`);
      }
    }
    if (echo && options.echoRounds > 0) await echoInRounds(session, echo, reports, options.echoRounds);
  } finally {
    await echo?.stop();
  }

  // Ratios: the service against every baseline of its scenario (variants: of their base scenario).
  for (const report of reports) {
    const service = report.runs.find((r) => r.kind === 'service');
    const baselineRuns = report.baselinesOf ? (reports.find((r) => r.name === report.baselinesOf)?.runs ?? []) : report.runs;
    if (!service) continue;
    report.ratios = baselineRuns.filter((r) => r.kind !== 'service' && r.callsPerSec > 0).map((r) => ({ against: r.subject, value: service.callsPerSec / r.callsPerSec }));
    // Within one run: this variant's service against other scenarios' services (events on ÷ events off, ...).
    for (const other of SCENARIOS.find((s) => s.name === report.name)?.variantOf?.compareTo ?? []) {
      const run = reports.find((r) => r.name === other)?.runs.find((r) => r.kind === 'service');
      if (run && run.callsPerSec > 0) report.ratios.push({ against: `${other} ${run.subject}`, value: service.callsPerSec / run.callsPerSec });
    }
  }

  const comparisons = options.compareRounds > 0 ? await compareInRounds(session, options.compareRounds) : [];
  for (const c of COMPARISONS) {
    if (comparisons.some((m) => m.name === c.name)) continue;
    const serviceOf = (name: string) => reports.find((r) => r.name === name)?.runs.find((r) => r.kind === 'service');
    const numerator = serviceOf(c.numerator);
    const denominator = serviceOf(c.denominator);
    if (!numerator || !denominator || denominator.callsPerSec === 0) continue;
    comparisons.push({
      name: c.name,
      value: numerator.callsPerSec / denominator.callsPerSec,
      cpuUsPerCall: [perCall(numerator.cpu.process, numerator.callsPerSec), perCall(denominator.cpu.process, denominator.callsPerSec)],
      ...(c.target === undefined ? {} : { target: c.target }),
    });
  }

  log('\n== ledger audit: credits verify');
  const audit = await verifyLedger(db.url, ctx.tenantSlug);
  log(audit.output.trim());

  const all = [...reports, ...session.unprepared];
  all.sort((a, b) => SCENARIOS.findIndex((s) => s.name === a.name) - SCENARIOS.findIndex((s) => s.name === b.name));
  const failures: string[] = [];
  if (!audit.ok) failures.push('credits verify found ledger problems');
  for (const s of all) {
    if (s.status === 'failed') failures.push(`${s.name}: ${s.note ?? 'failed'}`);
    for (const p of s.checkProblems) failures.push(`${s.name}: ${p}`);
    if (s.status === 'skipped') notes.push(`${s.name} skipped: ${s.note}`);
  }
  notes.push(
    `Before the run the machine was ${pct(session.background.busyPercent)} busy (load average ${session.background.loadavg.map((l) => l.toFixed(2)).join(' ')}); ` +
      'figures taken while other work runs on the machine are noisy.',
  );

  const machine = describeMachine();
  const report: BenchReport = {
    kind: 'bench',
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: {
      ...machine,
      postgres: db.serverVersion,
      ...(pgbench ? { pgbench: pgbench.version } : {}),
      database: db.embedded ? 'embedded, same machine' : 'DATABASE_URL',
    },
    options: {
      durationSec: options.durationSec,
      warmupSec: options.warmupSec,
      concurrency: options.concurrency,
      poolSize: options.poolSize,
      logLevel: options.logLevel,
      cpuProf: options.cpuProf,
      baselines: [...options.baselines],
    },
    scenarios: all,
    audit,
    failed: failures.length > 0,
    failures,
    notes,
    comparisons,
  };

  fs.mkdirSync(options.outDir, { recursive: true });
  const base = path.join(options.outDir, stamp);
  const chart = renderChart(
    all,
    `credits benchmark ${stamp}${report.failed ? ' (FAILED)' : ''}`,
    `${machine.cores} × ${machine.cpu}, ${options.concurrency} in flight, ${options.durationSec} s per run after ${options.warmupSec} s warm-up; ` +
      `server LOG_LEVEL=${options.logLevel}, pool ${options.poolSize}; everything on one machine`,
  );
  fs.writeFileSync(`${base}.svg`, chart);
  fs.writeFileSync(path.join(options.outDir, 'latest.svg'), chart);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  let markdown = renderMarkdown(report, `${stamp}.svg`);
  if (profileDir) {
    const profiles = summarizeProfiles(profileDir, all);
    markdown += profiles;
    fs.writeFileSync(`${base}-profile.md`, profiles);
  }
  fs.writeFileSync(`${base}.md`, markdown);

  log(`\n${renderTextTable(all)}\n`);
  for (const s of all.filter((x) => x.ratios.length > 0)) log(`${s.name}: ${s.ratios.map((r) => `service ÷ ${r.against} ${ratio(r.value)}`).join(', ')}`);
  for (const s of all.filter((x) => x.echoRounds)) log(describeEchoRounds(s.name, s.echoRounds!).replace(/\*\*/g, ''));
  for (const c of comparisons) log(describeComparison(c).replace(/\*\*/g, ''));
  for (const n of notes) log(`note: ${n}`);
  log(`\nwrote ${path.relative(process.cwd(), base)}.{json,md,svg}${profileDir ? ` and ${path.relative(process.cwd(), base)}-profile.md` : ''}`);
  if (report.failed) {
    log(`\nRUN FAILED:\n${failures.map((f) => `- ${f}`).join('\n')}`);
    return 1;
  }
  return 0;
}

/**
 * Service against service, robust to a machine whose speed drifts (other
 * work on it): each comparison's two runs alternate A B, B A, ... for
 * `rounds` rounds, and the ratio is of the calls summed over them.
 */
async function compareInRounds(session: Session, rounds: number): Promise<NonNullable<BenchReport['comparisons']>> {
  const found: NonNullable<BenchReport['comparisons']> = [];
  for (const c of COMPARISONS) {
    const numerator = session.prepared.find((p) => p.scenario.name === c.numerator);
    const denominator = session.prepared.find((p) => p.scenario.name === c.denominator);
    if (!numerator || !denominator) continue;
    log(`\n== ${c.name}: ${rounds} alternating rounds`);
    const each: number[] = [];
    // Per side: calls/s and server CPU % summed over the rounds (equal windows).
    const sums = new Map([numerator, denominator].map((p) => [p, { calls: 0, cpu: 0 as number | undefined }]));
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [numerator, denominator] : [denominator, numerator];
      const rates = new Map<Prepared, number>();
      for (const p of order) {
        const { run } = await measureService(session, p, undefined);
        rates.set(p, run.callsPerSec);
        const sum = sums.get(p)!;
        sum.calls += run.callsPerSec;
        sum.cpu = sum.cpu === undefined || run.cpu.process === undefined ? undefined : sum.cpu + run.cpu.process;
      }
      each.push(rates.get(numerator)! / rates.get(denominator)!);
    }
    const [a, b] = [sums.get(numerator)!, sums.get(denominator)!];
    found.push({
      name: c.name,
      value: a.calls / b.calls,
      rounds: each,
      cpuUsPerCall: [perCall(a.cpu, a.calls), perCall(b.cpu, b.calls)],
      ...(c.target === undefined ? {} : { target: c.target }),
    });
  }
  return found;
}

/**
 * Service ÷ echo, robust to a machine whose speed drifts: each scenario with
 * a target against echo (ECHO_TARGETS) runs `rounds` pairs back to back,
 * echo first, then service first, and so on (an even number balances the
 * two orders), and its ratio is of the calls summed over those pairs; the
 * median of the pairs' ratios is kept beside it. The first pair (service,
 * then echo, among the other scenarios' runs) stays the table's and is not
 * pooled. One pair swung by a third between runs an hour apart
 * (redeem-credit 0.46× and 0.67× echo on the same code). The scenario's own
 * check runs again after the rounds, which wrote more.
 */
async function echoInRounds(session: Session, echo: EchoProcess, reports: ScenarioReport[], rounds: number): Promise<void> {
  for (const report of reports) {
    const target = ECHO_TARGETS[report.name];
    const p = session.prepared.find((x) => x.scenario.name === report.name);
    // The service and its echo ran (a same-SQL or pgbench baseline that failed does not matter here).
    if (target === undefined || !p || !report.runs.some((r) => r.kind === 'service') || !report.runs.some((r) => r.kind === 'echo')) continue;
    log(`\n== ${report.name} ÷ echo: ${rounds} alternating rounds`);
    const pairs: Array<{ service: number; echo: number; errors: number }> = [];
    try {
      for (let round = 0; round < rounds; round++) {
        const order: Array<'service' | 'echo'> = round % 2 === 0 ? ['echo', 'service'] : ['service', 'echo'];
        const pair = { service: 0, echo: 0, errors: 0 };
        for (const side of order) {
          const run = side === 'service' ? (await measureService(session, p, undefined)).run : await measureEcho(session, p, echo);
          pair[side] = run.callsPerSec;
          pair.errors += run.errorCount;
        }
        pairs.push(pair);
      }
    } catch (err) {
      report.status = 'failed';
      report.note = `${report.note ? `${report.note}; ` : ''}echo rounds failed: ${(err as Error).message.split('\n')[0]}`;
      log(`  ${report.name} · echo rounds FAILED: ${(err as Error).message}`);
      continue;
    }
    const errors = pairs.reduce((total, pair) => total + pair.errors, 0);
    if (errors > 0) report.checkProblems.push(`${errors} calls failed in the echo rounds`);
    if (p.scenario.check) {
      try {
        report.checkProblems.push(...(await p.scenario.check(session.env)).map((problem) => `after the echo rounds: ${problem}`));
      } catch (err) {
        report.checkProblems.push(`check after the echo rounds failed to run: ${(err as Error).message}`);
      }
    }
    const sum = (side: 'service' | 'echo') => pairs.reduce((total, pair) => total + pair[side], 0);
    const each = pairs.map((pair) => pair.service / pair.echo);
    report.echoRounds = { value: sum('service') / sum('echo'), median: median(each), rounds: each, callsPerSec: pairs, target };
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Summaries of the service's CPU profiles, slowest scenario first (in full), the others shorter. */
function summarizeProfiles(dir: string, scenarios: ScenarioReport[]): string {
  const measured = scenarios
    .map((s) => ({ s, service: s.runs.find((r) => r.kind === 'service'), file: path.join(dir, `${s.name}.cpuprofile`) }))
    .filter((x) => x.service && fs.existsSync(x.file))
    // Slowest = fewest units of work per second (a batch call does 500).
    .sort((a, b) => (a.service!.unitsPerSec ?? a.service!.callsPerSec) - (b.service!.unitsPerSec ?? b.service!.callsPerSec));
  if (measured.length === 0) return '\n## CPU profiles\n\nNo profile was written (the server must exit normally for node --cpu-prof to write one).\n';
  const parts = ['\n## CPU profiles of the server (node --cpu-prof, self time)\n'];
  measured.forEach(({ s, service, file }, k) => {
    const top = k === 0 ? 25 : 10;
    const summary = summarizeProfile(file, top);
    const rate = service!.unitsPerSec !== undefined ? `${int(service!.unitsPerSec)} ${s.units?.name ?? 'units'}/s` : `${int(service!.callsPerSec)} calls/s`;
    const title = `${s.name}${k === 0 ? ' (slowest scenario)' : ''}: ${rate}`;
    const text = renderProfileMarkdown(summary, title, top);
    if (k === 0) log(`\n${text}`);
    parts.push(text);
  });
  return `${parts.join('\n')}\n`;
}

/** `credits verify` of the service's tenant in the bench database: the ledger's invariants after the load. */
async function verifyLedger(databaseUrl: string, tenantSlug: string): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(ROOT, 'bin', 'credits.js'), 'verify', '--tenant', tenantSlug],
      { env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn' }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({ ok: code === 0, output: `${stdout}${stderr}`.trim() || `exit code ${code}` });
      },
    );
  });
}

// ---------------------------------------------------------------------------
// Soak

async function soak(session: Session): Promise<number> {
  const { options, db, ctx, stamp } = session;
  const startedAt = new Date().toISOString();
  if (session.prepared.length === 0) throw new Error('no scenario of the soak mix could be prepared');
  const mix = session.prepared.map((p) => `${p.scenario.name} ${p.scenario.soakWeight}`).join(', ');
  log(`\n== soak: ${options.durationSec} s of mixed load (${mix}), RSS sampled every ${options.sampleSec} s`);
  const server = await startService({ databaseUrl: db.url, apiKey: ctx.apiKey, env: serverEnv(options), logFile: path.join(session.logDir, 'soak.log') });
  const samples: Array<{ t: number; rssBytes: number }> = [];
  let windowStart = 0;
  let timer: NodeJS.Timeout | undefined;
  let result: LoadResult;
  let cpu: WindowCpu | undefined;
  let peak: number | undefined;
  try {
    await checkpoint(db.dataSource);
    const sample = () => {
      const rss = rssBytes(server.pid);
      if (rss !== undefined) samples.push({ t: (performance.now() - windowStart) / 1000, rssBytes: rss });
    };
    ({ result, cpu } = await measureLoad(
      'soak',
      {
        mode: 'grpc',
        address: server.address,
        apiKey: ctx.apiKey,
        targets: session.prepared.map((p) => ({
          name: p.scenario.name,
          path: p.rpc.method.path,
          requests: p.requests,
          weight: p.scenario.soakWeight!,
          idempotencyKeys: p.scenario.idempotencyKeys,
        })),
        concurrency: options.concurrency,
        warmupSec: options.warmupSec,
        durationSec: options.durationSec,
      },
      server.pid,
      db.postmasterPid,
      {
        windowStart: () => {
          windowStart = performance.now();
          sample();
          timer = setInterval(sample, options.sampleSec * 1000);
        },
        tick: () => `rss ${mb(rssBytes(server.pid))} MB`,
      },
    ));
    clearInterval(timer);
    sample();
    peak = peakRssBytes(server.pid);
  } finally {
    clearInterval(timer);
    await server.stop();
  }

  const rss = analyzeRss(samples, options.durationSec);
  const run = toRunReport('service (mixed)', 'service', result, cpu, undefined, { peakRssBytes: peak });
  const audit = await verifyLedger(db.url, ctx.tenantSlug);
  const checks: string[] = [];
  for (const p of session.prepared) for (const problem of (await p.scenario.check?.(session.env)) ?? []) checks.push(`${p.scenario.name}: ${problem}`);
  const failures = [...(audit.ok ? [] : ['credits verify found ledger problems']), ...checks];
  if (run.errorCount > 0) failures.push(`${run.errorCount} calls failed (${Object.entries(run.errors).map(([k, v]) => `${k} ${v}`).join(', ')})`);
  if (rss.grew) failures.push('server RSS grew over the soak');

  const machine = describeMachine();
  const summary: SoakSummary = {
    kind: 'soak',
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { ...machine, postgres: db.serverVersion, database: db.embedded ? 'embedded, same machine' : 'DATABASE_URL' },
    options: { durationSec: options.durationSec, warmupSec: options.warmupSec, concurrency: options.concurrency, poolSize: options.poolSize, logLevel: options.logLevel, sampleSec: options.sampleSec },
    mix: Object.fromEntries(session.prepared.map((p) => [p.scenario.name, { weight: p.scenario.soakWeight!, ...result.perTarget[p.scenario.name] }])),
    run,
    rss: { ...rss, peakHwmBytes: peak },
    audit,
    failed: failures.length > 0,
    failures,
    background: session.background,
  };
  fs.mkdirSync(options.outDir, { recursive: true });
  const base = path.join(options.outDir, `${stamp}-soak`);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(summary, null, 2)}\n`);
  fs.writeFileSync(
    `${base}.svg`,
    renderRssChart(samples, `credits soak ${stamp}: server RSS`, `${options.durationSec} s mixed load (${mix}), ${options.concurrency} in flight; ${machine.cores} × ${machine.cpu}`),
  );
  const markdown = renderSoakMarkdown(summary, `${stamp}-soak.svg`);
  fs.writeFileSync(`${base}.md`, markdown);
  log(`\n${markdown.split('\n').slice(7).join('\n')}`);
  log(`wrote ${path.relative(process.cwd(), base)}.{json,md,svg}`);
  return summary.failed ? 1 : 0;
}

if (require.main === module) {
  // Exit explicitly, with the run's code, rather than wait for every handle
  // (pools, timers of the load generator) to close by itself.
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error('bench: failed:', err);
      process.exit(1);
    },
  );
}
