import { int, mb, ms, pct } from './format';
import type { RunReport } from './report';

export interface RssAnalysis {
  /** Length of the first and last windows compared, seconds (a minute, or a quarter of a shorter soak). */
  windowSec: number;
  firstWindowMeanBytes: number;
  lastWindowMeanBytes: number;
  maxBytes: number;
  growthBytes: number;
  /** Least-squares slope over the whole soak, bytes per minute: a leak shows as a steady positive slope. */
  slopeBytesPerMinute: number;
  /** The last window's mean is more than 5% (and 5 MB) above the first window's. */
  grew: boolean;
  samples: Array<{ t: number; rssBytes: number }>;
}

export function analyzeRss(samples: Array<{ t: number; rssBytes: number }>, durationSec: number): RssAnalysis {
  const windowSec = Math.min(60, durationSec / 4);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const first = mean(samples.filter((s) => s.t <= windowSec).map((s) => s.rssBytes));
  const last = mean(samples.filter((s) => s.t >= durationSec - windowSec).map((s) => s.rssBytes));
  const mt = mean(samples.map((s) => s.t));
  const mr = mean(samples.map((s) => s.rssBytes));
  const sxx = samples.reduce((a, s) => a + (s.t - mt) ** 2, 0);
  const sxy = samples.reduce((a, s) => a + (s.t - mt) * (s.rssBytes - mr), 0);
  const growth = last - first;
  return {
    windowSec,
    firstWindowMeanBytes: first,
    lastWindowMeanBytes: last,
    maxBytes: Math.max(...samples.map((s) => s.rssBytes)),
    growthBytes: growth,
    slopeBytesPerMinute: sxx > 0 ? (60 * sxy) / sxx : 0,
    grew: growth > Math.max(0.05 * first, 5 * 1024 * 1024),
    samples,
  };
}

export interface SoakSummary {
  kind: 'soak';
  startedAt: string;
  finishedAt: string;
  machine: { cpu: string; cores: number; memoryGb: number; os: string; node: string; postgres: string; database: string };
  options: { durationSec: number; warmupSec: number; concurrency: number; poolSize: number; logLevel: string; sampleSec: number };
  /** Per scenario of the mix: its weight, and the calls and errors it got. */
  mix: Record<string, { weight: number; calls?: number; errors?: number }>;
  run: RunReport;
  rss: RssAnalysis & { peakHwmBytes: number | undefined };
  audit: { ok: boolean; output: string };
  failed: boolean;
  failures: string[];
  background: { busyPercent: number | undefined; loadavg: number[] };
}

export function renderSoakMarkdown(summary: SoakSummary, chartFile: string): string {
  const { machine: m, options: o, run, rss, audit } = summary;
  const window = Math.round(rss.windowSec);
  const lines = [
    `# Soak ${summary.startedAt}${summary.failed ? ' — FAILED' : ''}`,
    '',
    `${o.durationSec} s of mixed load after ${o.warmupSec} s warm-up, ${o.concurrency} calls in flight, one server process (LOG_LEVEL=${o.logLevel}, ` +
      `pool ${o.poolSize}); mix (weight: calls, errors): ` +
      Object.entries(summary.mix)
        .map(([name, x]) => `${name} (${x.weight}: ${int(x.calls)}, ${x.errors ?? 0})`)
        .join(', ') +
      '.',
    `Machine: ${m.cores} × ${m.cpu}, ${m.memoryGb} GB; Node ${m.node}; PostgreSQL ${m.postgres} (${m.database}); ` +
      `busy ${pct(summary.background.busyPercent)} before the run (load average ${summary.background.loadavg.map((l) => l.toFixed(2)).join(' ')}).`,
    '',
    `![server RSS over the soak](${chartFile})`,
    '',
    `- throughput ${int(run.callsPerSec)} calls/s; p50 ${ms(run.latencyUs.p50)} ms, p95 ${ms(run.latencyUs.p95)} ms, p99 ${ms(run.latencyUs.p99)} ms; errors ${run.errorCount}`,
    `- CPU: server ${pct(run.cpu.process)} of a core, load generator ${pct(run.cpu.loadgen)}, PostgreSQL ${pct(run.cpu.postgres)}, machine ${pct(run.cpu.machine)} of all cores`,
    `- server RSS (sampled every ${o.sampleSec} s): first ${window} s mean ${mb(rss.firstWindowMeanBytes)} MB, last ${window} s mean ${mb(rss.lastWindowMeanBytes)} MB ` +
      `(${rss.growthBytes >= 0 ? '+' : ''}${(rss.growthBytes / 1048576).toFixed(1)} MB, ${((100 * rss.growthBytes) / rss.firstWindowMeanBytes).toFixed(1)}%), ` +
      `trend ${(rss.slopeBytesPerMinute / 1048576).toFixed(1)} MB/min (least squares), max sampled ${mb(rss.maxBytes)} MB, peak (VmHWM) ${mb(rss.peakHwmBytes)} MB`,
    `- verdict: ${rss.grew ? 'GROWTH' : 'no growth'} (criterion: the last window's mean within 5% or 5 MB of the first window's)`,
    `- \`credits verify\`: ${audit.ok ? 'ok' : 'FAILED'} — ${audit.output.trim().split('\n').slice(-2).join(' / ')}`,
    ...summary.failures.map((f) => `- FAILURE: ${f}`),
    '',
  ];
  return lines.join('\n');
}
