import path from 'node:path';
import { parseArgs } from 'node:util';
import { SERVER_NODE_FLAGS } from './processes';

export const BASELINES = ['echo', 'sql', 'pgbench'] as const;
export type Baseline = (typeof BASELINES)[number];

export interface BenchOptions {
  soak: boolean;
  durationSec: number;
  warmupSec: number;
  concurrency: number;
  /** Scenario name filters (prefix match); empty means every scenario. */
  scenarios: string[];
  baselines: Set<Baseline>;
  /** The server's LOG_LEVEL for the runs (variants may override it). */
  logLevel: string;
  /** The server's CREDITS_DB_POOL_SIZE, the same-SQL pool and pgbench's client count. */
  poolSize: number;
  cpuProf: boolean;
  /** Where results go. */
  outDir: string;
  /** Soak: seconds between RSS samples. */
  sampleSec: number;
  /** Extra alternating runs of each service-to-service comparison (see COMPARISONS); 0: none. */
  compareRounds: number;
  /** Pairs of service and echo runs, alternating, of each scenario with a target against echo (see ECHO_TARGETS); 0: none. */
  echoRounds: number;
}

export const USAGE = `usage: npm run bench -- [options]

Starts PostgreSQL (embedded in .data/bench, or DATABASE_URL), the server
(node ${SERVER_NODE_FLAGS.join(' ')} bin/credits.js serve, as npm start runs it) and a load generator as separate processes, runs
each scenario and its baselines (grpc-js echo, the same SQL through pg, and
pgbench), runs \`credits verify\`, and writes bench/results/<date>.{json,md,svg}.

  --duration <s>       measured seconds per run (default 10; soak 300)
  --warmup <s>         warm-up seconds before each measured run (default 5; soak 60)
  --concurrency <n>    calls in flight (default 64)
  --scenario <names>   comma-separated scenario names (exactly that one) or
                       prefixes of names (every match) (default all)
  --baselines <list>   comma-separated subset of echo,sql,pgbench, or none (default all)
  --log-level <level>  server LOG_LEVEL (default info, the service's default)
  --pool-size <n>      server CREDITS_DB_POOL_SIZE = same-SQL pool = pgbench clients (default 20)
  --cpu-prof           run the server under node --cpu-prof (one process per scenario)
                       and summarise the profiles by function and by package
  --soak               5 minutes of mixed load; samples server RSS and reports its growth
  --sample <s>         soak: seconds between RSS samples (default 5)
  --compare-rounds <n> after the runs, measure each service-to-service comparison
                       (metrics on/off, tracing on/off, two processes/one, and
                       the second round's: expiring lots, metadata, deduct from
                       lots, hold, event streams; see COMPARISONS) n more
                       times, alternating ABBA, and report it from those rounds
                       (default 0: from the single runs above)
  --echo-rounds <n>    after the runs, measure each scenario with a target
                       against echo (add, redeem-coupon, redeem-credit,
                       get-balance, list-page; see ECHO_TARGETS) and its echo
                       in n more pairs back to back, echo first, then service
                       first, ... (even n balances them), and report its ÷
                       echo from those pairs, summed, with their median
                       (default 0: from the single pair above); needs the
                       echo baseline
  --out <dir>          results folder (default bench/results)
  -h, --help`;

export class UsageError extends Error {}

export function parseOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      soak: { type: 'boolean' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      concurrency: { type: 'string' },
      scenario: { type: 'string' },
      baselines: { type: 'string' },
      'log-level': { type: 'string' },
      'pool-size': { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      sample: { type: 'string' },
      'compare-rounds': { type: 'string' },
      'echo-rounds': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const number = (name: string, raw: string | undefined, fallback: number, min: number): number => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${raw}"`);
    return n;
  };
  const soak = values.soak === true;
  const baselines = new Set<Baseline>();
  const baselineList = values.baselines ?? BASELINES.join(',');
  if (baselineList !== 'none') {
    for (const b of baselineList.split(',').map((s) => s.trim()).filter(Boolean)) {
      if (!(BASELINES as readonly string[]).includes(b)) throw new UsageError(`--baselines takes ${BASELINES.join(', ')} or none, got "${b}"`);
      baselines.add(b as Baseline);
    }
  }
  const echoRounds = number('echo-rounds', values['echo-rounds'], 0, 0);
  if (echoRounds > 0 && !baselines.has('echo')) throw new UsageError('--echo-rounds needs the echo baseline (--baselines with echo)');
  const logLevel = values['log-level'] ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw new UsageError(`--log-level "${logLevel}" is not a pino level`);
  return {
    soak,
    durationSec: number('duration', values.duration, soak ? 300 : 10, 1),
    // The soak's first minute is compared with its last: let the heap settle first.
    warmupSec: number('warmup', values.warmup, soak ? 60 : 5, 0),
    concurrency: number('concurrency', values.concurrency, 64, 1),
    scenarios: (values.scenario ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    baselines,
    logLevel,
    poolSize: number('pool-size', values['pool-size'], 20, 1),
    cpuProf: values['cpu-prof'] === true,
    outDir: path.resolve(values.out ?? path.join(__dirname, '..', '..', 'bench', 'results')),
    sampleSec: number('sample', values.sample, 5, 1),
    compareRounds: number('compare-rounds', values['compare-rounds'], 0, 0),
    echoRounds,
  };
}
