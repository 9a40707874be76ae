import { int, markdownTable, mb, ms, pct, ratio, textTable } from './format';
import type { LoadResult } from './protocol';
import { Histogram } from './histogram';
import type { WindowCpu } from './proc-stats';

export type RunKind = 'service' | 'echo' | 'sql' | 'pgbench';

/** One measured run: the service, or one of its baselines. */
export interface RunReport {
  /** Row label: "service", "echo", "same SQL (pg)", "pgbench same SQL", "pgbench 3-stmt", ... */
  subject: string;
  kind: RunKind;
  /** Successful calls (transactions for pgbench) per second in the window. */
  callsPerSec: number;
  /** Work units per second when a call carries several (credits of a batch). */
  unitsPerSec?: number;
  /** Latency of successful calls, microseconds. */
  latencyUs: { p50: number; p95: number; p99: number; mean: number; max: number };
  errors: Record<string, number>;
  errorCount: number;
  /**
   * CPU in the window, % of one core: `process` is what is measured (server,
   * echo server, the pg client process, or pgbench), `loadgen` the load
   * generator when it is a separate process, `postgres` every PostgreSQL
   * process, `machine` the whole box in % of all its cores;
   * `processThread` and `loadgenThread` the main thread of the measured
   * process (the busiest, of several) and of the load generator: a Node.js
   * process's JavaScript thread, which near 100% is as busy as it can be.
   */
  cpu: { process?: number; loadgen?: number; postgres?: number; machine?: number; processThread?: number; loadgenThread?: number };
  /** Peak RSS of the measured process (VmHWM), bytes. */
  peakRssBytes?: number;
  /** Mean encoded response size (gRPC runs). */
  responseBytes?: number;
  /** How the run was made (pgbench command, ...). */
  note?: string;
  /** Event streams attached during the run (scenarios with eventStreams). */
  eventStreams?: EventStreamsReport;
}

/** What the StreamEvents consumers saw while the service was measured. */
export interface EventStreamsReport {
  streams: number;
  /** Delivery lag (receipt − the event's create_time) of the events received in the window, µs. */
  lagUs: { p50: number; p99: number; max: number };
  /** Events per second each stream received in the window (mean over the streams). */
  eventsPerSecPerStream: number;
  /** Events the tenant's outbox got from the streams' start to the end of the run; each stream should have them all. */
  expected: number;
  received: number[];
  duplicates: number[];
  errors: string[];
  /** CPU of the consumers' process in the window, % of one core. */
  consumersCpu?: number;
}

export interface SqlSummary {
  /** Statements one call sends, in order, shortened. */
  statements: string[];
  /** The same, in full. */
  texts: string[];
  /** Round trips per call (= statements) and transactions among them. */
  transactions: number;
  /** Varying values that the recorded SQL does not contain (replay could not vary them). */
  unmatched: string[];
  /** Parameters the server generated (ids), made afresh by the replay; undefined when two sample calls sent different SQL. */
  generated: number | undefined;
}

export interface ScenarioReport {
  name: string;
  title: string;
  status: 'ok' | 'skipped' | 'failed';
  note?: string;
  /** For variants: the scenario whose baselines the ratios use. */
  baselinesOf?: string;
  units?: { perCall: number; name: string };
  requestBytes?: number;
  sql?: SqlSummary;
  runs: RunReport[];
  /** service calls/s ÷ each baseline's calls/s. */
  ratios: Array<{ against: string; value: number }>;
  /** Problems found by the scenario's own checks after its runs. */
  checkProblems: string[];
  /**
   * `--echo-rounds`: service ÷ echo over pairs run back to back in
   * alternating order (not the first pair above), as the calls of every
   * pair summed on each side.
   */
  echoRounds?: {
    value: number;
    /** The median of the pairs' ratios. */
    median: number;
    /** Each pair's service ÷ echo, in the order run. */
    rounds: number[];
    /** Each pair's calls/s, service's and echo's, and the calls that failed in either. */
    callsPerSec: Array<{ service: number; echo: number; errors: number }>;
    target?: number;
  };
}

export interface BenchReport {
  kind: 'bench';
  startedAt: string;
  finishedAt: string;
  machine: { cpu: string; cores: number; memoryGb: number; os: string; node: string; postgres: string; pgbench?: string; database: string };
  options: { durationSec: number; warmupSec: number; concurrency: number; poolSize: number; logLevel: string; cpuProf: boolean; baselines: string[] };
  scenarios: ScenarioReport[];
  audit: { ok: boolean; output: string };
  failed: boolean;
  failures: string[];
  notes: string[];
  /** Service runs compared within the run (see COMPARISONS in scenarios.ts). */
  comparisons?: Array<{
    name: string;
    /** numerator ÷ denominator calls/s. */
    value: number;
    target?: number;
    /** Each round's ratio, when measured in alternating rounds. */
    rounds?: number[];
    /** The server's CPU per call (µs) of numerator and denominator: steadier than calls/s on a busy machine. */
    cpuUsPerCall?: [number | undefined, number | undefined];
  }>;
}

export function toRunReport(
  subject: string,
  kind: RunKind,
  result: LoadResult,
  cpu: WindowCpu | undefined,
  units: number | undefined,
  extra: Partial<RunReport> = {},
): RunReport {
  const h = Histogram.fromJSON(result.histogram);
  const errorCount = Object.values(result.errors).reduce((a, b) => a + b, 0);
  const callsPerSec = h.count / result.seconds;
  return {
    subject,
    kind,
    callsPerSec,
    ...(units ? { unitsPerSec: callsPerSec * units } : {}),
    latencyUs: { p50: h.quantile(0.5), p95: h.quantile(0.95), p99: h.quantile(0.99), mean: h.mean(), max: h.max },
    errors: result.errors,
    errorCount,
    cpu: {
      process: cpu?.processes.process,
      loadgen: cpu?.processes.loadgen,
      postgres: cpu?.postgres,
      machine: cpu?.machine,
      processThread: cpu?.mainThreads.process,
      loadgenThread: cpu?.mainThreads.loadgen,
    },
    ...(result.responseBytes !== undefined ? { responseBytes: result.responseBytes } : {}),
    ...extra,
  };
}

const HEADER = [
  'scenario',
  'subject',
  'calls/s',
  'p50 ms',
  'p95 ms',
  'p99 ms',
  'errors',
  'CPU %',
  'CPU µs/call',
  'thread %',
  'pg %',
  'pg µs/call',
  'loadgen %',
  'loadgen thread %',
  'box %',
  'peak RSS MB',
  'service ÷',
];

/** CPU time per successful call, µs, from a CPU share (% of one core) and a rate. */
export const perCall = (cpuPercent: number | undefined, callsPerSec: number): number | undefined =>
  cpuPercent === undefined || callsPerSec <= 0 ? undefined : (cpuPercent / 100) * (1e6 / callsPerSec);

function rows(scenarios: ScenarioReport[]): string[][] {
  const out: string[][] = [];
  for (const s of scenarios) {
    if (s.status !== 'ok' && s.runs.length === 0) {
      out.push([s.name, `${s.status.toUpperCase()} (see notes)`, ...HEADER.slice(2).map(() => '')]);
      continue;
    }
    for (const r of s.runs) {
      const service = r.kind === 'service';
      const versus = s.ratios.find((x) => x.against === r.subject);
      const calls = r.unitsPerSec !== undefined ? `${int(r.callsPerSec)} (${int(r.unitsPerSec)} ${s.units?.name ?? 'units'}/s)` : int(r.callsPerSec);
      out.push([
        s.name,
        r.subject,
        calls,
        ms(r.latencyUs.p50),
        ms(r.latencyUs.p95),
        ms(r.latencyUs.p99),
        r.errorCount === 0 ? '0' : `${r.errorCount} (${Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ')})`,
        pct(r.cpu.process),
        int(perCall(r.cpu.process, r.callsPerSec)),
        pct(r.cpu.processThread),
        pct(r.cpu.postgres),
        int(perCall(r.cpu.postgres, r.callsPerSec)),
        pct(r.cpu.loadgen),
        pct(r.cpu.loadgenThread),
        pct(r.cpu.machine),
        mb(r.peakRssBytes),
        service ? '' : ratio(versus?.value),
      ]);
    }
  }
  return out;
}

export function renderTextTable(scenarios: ScenarioReport[]): string {
  return textTable(HEADER, rows(scenarios));
}

export function renderMarkdown(report: BenchReport, chartFile: string | undefined): string {
  const m = report.machine;
  const o = report.options;
  const lines: string[] = [];
  lines.push(`# Benchmark ${report.startedAt}${report.failed ? ' — FAILED' : ''}`, '');
  lines.push(
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB, ${m.os}; Node ${m.node}; PostgreSQL ${m.postgres} (${m.database})` +
      `${m.pgbench ? `; ${m.pgbench}` : ''}. Load generator, server, echo server and PostgreSQL share this machine.`,
    '',
    `Each run: ${o.warmupSec} s warm-up, then ${o.durationSec} s measured, ${o.concurrency} calls in flight; server LOG_LEVEL=${o.logLevel}, ` +
      `pool ${o.poolSize} connections (same-SQL pool and pgbench clients too)${o.cpuProf ? '; server under --cpu-prof (slower)' : ''}.`,
    '',
  );
  if (chartFile) lines.push(`![throughput and p99 per scenario](${chartFile})`, '');
  lines.push(markdownTable(HEADER, rows(report.scenarios)), '');
  lines.push(
    '`CPU %` is the measured process (server, echo server, the pg client process, or pgbench) in % of one core, and `CPU µs/call` that CPU per ' +
      'successful call; `thread %` its main thread (for Node.js the one JavaScript thread: near 100% the process can do no more; well ' +
      'below, calls wait on something else); `pg` the same for all PostgreSQL processes; `loadgen %` the gRPC load generator and ' +
      '`loadgen thread %` its main thread; `box %` the whole machine in % of all its cores (other work included). `service ÷` is ' +
      'service calls/s ÷ that row\'s calls/s.',
    '',
  );
  const streamed = report.scenarios.flatMap((s) => s.runs.filter((r) => r.eventStreams).map((r) => ({ s, r, e: r.eventStreams! })));
  if (streamed.length > 0) {
    lines.push('## Event streams attached during the run', '');
    for (const { s, r, e } of streamed) {
      lines.push(
        `- **${s.name}** (${r.subject}): ${e.streams} streams, delivery lag p50 ${ms(e.lagUs.p50)} ms, p99 ${ms(e.lagUs.p99)} ms, max ${ms(e.lagUs.max)} ms; ` +
          `${int(e.eventsPerSecPerStream)} events/s per stream against ${int(r.callsPerSec)} adds/s; ` +
          `each stream received ${e.received.join(', ')} of the ${int(e.expected)} events written (duplicates ${e.duplicates.join(', ')})` +
          `${e.errors.length ? `; errors: ${e.errors.join('; ')}` : ''}; consumers' process ${pct(e.consumersCpu)} CPU.`,
      );
    }
    lines.push('');
  }
  const ratios = report.scenarios.filter((s) => s.ratios.length > 0);
  if (ratios.length > 0) {
    lines.push('## Ratios (service calls/s ÷ baseline calls/s)', '');
    for (const s of ratios) lines.push(`- **${s.name}**${s.baselinesOf ? ` (baselines of ${s.baselinesOf})` : ''}: ${s.ratios.map((r) => `÷ ${r.against} ${ratio(r.value)}`).join(', ')}`);
    lines.push('');
  }
  const inRounds = report.scenarios.filter((s) => s.echoRounds);
  if (inRounds.length > 0) {
    lines.push('## Service ÷ echo in alternating rounds (--echo-rounds)', '');
    for (const s of inRounds) lines.push(`- ${describeEchoRounds(s.name, s.echoRounds!)}`);
    lines.push('');
  }
  if (report.comparisons && report.comparisons.length > 0) {
    lines.push('## Service against service (calls/s, within this run)', '');
    for (const c of report.comparisons) lines.push(`- ${describeComparison(c)}`);
    lines.push('');
  }
  const withSql = report.scenarios.filter((s) => s.sql);
  if (withSql.length > 0) {
    lines.push('## SQL per call (recorded from the server code; the same-SQL baselines replay it)', '');
    for (const s of withSql) {
      const q = s.sql!;
      lines.push(
        `- **${s.name}**: ${q.statements.length} statements (round trips), ${q.transactions} transaction(s)` +
          (q.generated === undefined ? '; two identical calls sent different SQL, so generated values were not detected' : q.generated > 0 ? `; ${q.generated} server-generated parameter(s) made afresh per call` : '') +
          (q.unmatched.length ? `; NOT varied: ${q.unmatched.join(', ')}` : ''),
      );
      for (const st of q.statements) lines.push(`  - \`${st}\``);
    }
    lines.push('');
  }
  lines.push('## Ledger audit and checks', '', `\`credits verify\`: ${report.audit.ok ? 'ok' : 'FAILED'} — ${report.audit.output.trim().split('\n').slice(-3).join(' / ')}`, '');
  for (const s of report.scenarios) for (const p of s.checkProblems) lines.push(`- ${s.name}: ${p}`);
  if (report.failures.length > 0) lines.push('', '**Run failed:**', '', ...report.failures.map((f) => `- ${f}`));
  if (report.notes.length > 0) lines.push('', '## Notes', '', ...report.notes.map((n) => `- ${n}`));
  return `${lines.join('\n')}\n`;
}

/**
 * A ratio against its target: to as many places as show a ratio below the
 * target below it ("0.498×", not "0.50×" beside "NOT met").
 */
export function ratioAgainst(value: number, target: number | undefined): string {
  if (target === undefined || value >= target || !Number.isFinite(value)) return ratio(value);
  let places = 2;
  while (places < 6 && Number(value.toFixed(places)) >= target) places++;
  return `${value.toFixed(places)}×`;
}

/** "**add** ÷ echo: 0.52× (target ≥ 0.6×: NOT met; 4 alternating rounds, each 0.48×, …)". */
export function describeEchoRounds(name: string, r: NonNullable<ScenarioReport['echoRounds']>): string {
  const details = [
    ...(r.target === undefined ? [] : [`target ≥ ${r.target}×: ${r.value >= r.target ? 'met' : 'NOT met'}`]),
    `${r.rounds.length} alternating rounds, each ${r.rounds.map((x) => ratio(x)).join(', ')}, median ${ratio(r.median)}`,
    ...(r.callsPerSec.length === 0 ? [] : [`echo at ${int(Math.min(...r.callsPerSec.map((p) => p.echo)))}–${int(Math.max(...r.callsPerSec.map((p) => p.echo)))} calls/s`]),
    ...(r.callsPerSec.some((p) => p.errors > 0) ? [`${int(r.callsPerSec.reduce((n, p) => n + p.errors, 0))} calls failed`] : []),
  ];
  return `**${name}** ÷ echo: ${ratioAgainst(r.value, r.target)} (${details.join('; ')})`;
}

/** "**name**: 0.97× (target ≥ 0.95×: met; rounds 0.95×, 0.99×)". */
export function describeComparison(c: NonNullable<BenchReport['comparisons']>[number]): string {
  const details = [
    ...(c.target === undefined ? [] : [`target ≥ ${c.target}×: ${c.value >= c.target ? 'met' : 'NOT met'}`]),
    ...(c.rounds ? [`${c.rounds.length} alternating rounds, each ${c.rounds.map((r) => ratio(r)).join(', ')}`] : ['one run each']),
    ...(c.cpuUsPerCall && c.cpuUsPerCall[0] !== undefined && c.cpuUsPerCall[1] !== undefined
      ? [`server CPU per call ${int(c.cpuUsPerCall[0])} µs ÷ ${int(c.cpuUsPerCall[1])} µs = ${ratio(c.cpuUsPerCall[0] / c.cpuUsPerCall[1])}`]
      : []),
  ];
  return `**${c.name}**: ${ratioAgainst(c.value, c.target)} (${details.join('; ')})`;
}
