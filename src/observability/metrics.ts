import { status } from '@grpc/grpc-js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * grpc_code values as grpc-go's codes.Code.String() spells them, which is
 * what go-grpc-prometheus (and every dashboard built on it) puts in the label.
 */
const GO_CODE_NAMES: Record<status, string> = {
  [status.OK]: 'OK',
  [status.CANCELLED]: 'Canceled',
  [status.UNKNOWN]: 'Unknown',
  [status.INVALID_ARGUMENT]: 'InvalidArgument',
  [status.DEADLINE_EXCEEDED]: 'DeadlineExceeded',
  [status.NOT_FOUND]: 'NotFound',
  [status.ALREADY_EXISTS]: 'AlreadyExists',
  [status.PERMISSION_DENIED]: 'PermissionDenied',
  [status.RESOURCE_EXHAUSTED]: 'ResourceExhausted',
  [status.FAILED_PRECONDITION]: 'FailedPrecondition',
  [status.ABORTED]: 'Aborted',
  [status.OUT_OF_RANGE]: 'OutOfRange',
  [status.UNIMPLEMENTED]: 'Unimplemented',
  [status.INTERNAL]: 'Internal',
  [status.UNAVAILABLE]: 'Unavailable',
  [status.DATA_LOSS]: 'DataLoss',
  [status.UNAUTHENTICATED]: 'Unauthenticated',
};

export function grpcCodeLabel(code: status): string {
  return GO_CODE_NAMES[code] ?? 'Unknown';
}

interface Inc {
  inc(value?: number): void;
}

/**
 * Counts kept as plain numbers and handed to their prom-client Counter when
 * it is read (a scrape): a labelled child's inc() hashes its labels each
 * time, ~0.7 µs on Node 20, and every call made five (started, received,
 * sent, handled, the key cache's hit); a tally's inc() is an addition.
 */
class Tallies<L extends string> {
  private readonly tallies: Array<{ labels: Partial<Record<L, string>>; pending: number }> = [];

  /** The Counter's `collect` option: adds what was counted since the last read. */
  readonly flush = (counter: Counter<L>): void => {
    for (const tally of this.tallies) {
      if (tally.pending === 0) continue;
      counter.inc(tally.labels, tally.pending);
      tally.pending = 0;
    }
  };

  /** A child counting under `labels` (shown once it counted, as a prom-client child is). */
  child(labels: Partial<Record<L, string>>): Inc {
    const tally = { labels, pending: 0 };
    this.tallies.push(tally);
    return {
      inc: (value = 1) => {
        tally.pending += value;
      },
    };
  }
}

/** A Counter whose children count as Tallies (see there). */
function talliedCounter<L extends string>(options: { name: string; help: string; labelNames: L[]; registers: Registry[] }): { counter: Counter<L>; tallies: Tallies<L> } {
  const tallies = new Tallies<L>();
  const counter: Counter<L> = new Counter<L>(
    Object.assign({}, options, {
      collect() {
        tallies.flush(counter);
      },
    }),
  );
  return { counter, tallies };
}

/** One method's metric children, looked up once: a call then costs a few additions (Tallies) and one histogram observation (prom-client hashes its labels, ~1.5 µs). */
export interface MethodMetrics {
  started: Inc;
  received: Inc;
  sent: Inc;
  replayed: Inc;
  handling: { observe(seconds: number): void };
  handled(code: status): Inc;
}

/**
 * One call's figures, go-grpc-prometheus style, as the call pipeline
 * (recordCallMetrics) and the calls it never sees (standardServiceMetrics)
 * count them: started when begun, its messages in and out, and once its
 * handling time and code.
 */
export class CallFigures {
  private readonly startedAt = performance.now();
  private ended = false;

  constructor(private readonly m: MethodMetrics) {
    m.started.inc();
  }

  received(): void {
    this.m.received.inc();
  }

  sent(messages = 1): void {
    this.m.sent.inc(messages);
  }

  /** The call ended with `code`: counted the first time only (a cancel after the status counts nothing). */
  handled(code: status): void {
    if (this.ended) return;
    this.ended = true;
    this.m.handling.observe((performance.now() - this.startedAt) / 1000);
    this.m.handled(code).inc();
  }
}

/** What the pool gauges read (a pg Pool's own counters; see observeDatabasePool). */
export interface PoolCounters {
  totalCount: number;
  idleCount: number;
  waitingCount: number;
}

/** Active holds per currency, as read on a scrape. */
export type HoldsReader = () => Promise<Array<{ currency: string; holds: number; held: bigint }>>;

type MethodLabels = 'grpc_type' | 'grpc_service' | 'grpc_method';

/** A method's kind as go-grpc-prometheus's grpc_type label names it. */
export type GrpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

/**
 * The process's Prometheus metrics, in a registry of its own (several servers
 * in one process, as in the tests, do not mix their figures). The gRPC ones
 * carry go-grpc-prometheus's names, labels and buckets so that dashboards
 * made for it work unchanged; the rest are `credits_*`. Nothing here queries
 * the database per call: the pool gauges read the pool's counters, and the
 * holds gauge runs one query per scrape.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly started: Tallies<MethodLabels>;
  private readonly handled: Tallies<MethodLabels | 'grpc_code'>;
  private readonly handling: Histogram<MethodLabels>;
  private readonly received: Tallies<MethodLabels>;
  private readonly sent: Tallies<MethodLabels>;
  private readonly replays: Tallies<'grpc_service' | 'grpc_method'>;
  private readonly groupSizes: Histogram<'group'>;
  private readonly sweeps: Counter<'outcome'>;
  private readonly sweptBalances: Counter;
  private readonly lapsedRedemptions: Counter;
  private readonly databaseUp: Gauge;
  private streamLag: Histogram | undefined;
  private readonly methods = new Map<string, MethodMetrics>();
  private readonly authHit: Inc;
  private readonly authMiss: Inc;

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const methodLabels: MethodLabels[] = ['grpc_type', 'grpc_service', 'grpc_method'];
    this.started = talliedCounter({ name: 'grpc_server_started_total', help: 'Total number of RPCs started on the server.', labelNames: methodLabels, registers }).tallies;
    this.handled = talliedCounter<MethodLabels | 'grpc_code'>({
      name: 'grpc_server_handled_total',
      help: 'Total number of RPCs completed on the server, regardless of success or failure.',
      labelNames: [...methodLabels, 'grpc_code'],
      registers,
    }).tallies;
    this.handling = new Histogram({
      name: 'grpc_server_handling_seconds',
      help: 'Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.',
      labelNames: methodLabels,
      // prometheus.DefBuckets, as go-grpc-prometheus uses.
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.received = talliedCounter({ name: 'grpc_server_msg_received_total', help: 'Total number of RPC stream messages received on the server.', labelNames: methodLabels, registers }).tallies;
    this.sent = talliedCounter({ name: 'grpc_server_msg_sent_total', help: 'Total number of gRPC stream messages sent by the server.', labelNames: methodLabels, registers }).tallies;
    this.replays = talliedCounter<'grpc_service' | 'grpc_method'>({
      name: 'credits_idempotent_replays_total',
      help: 'Calls answered from a stored outcome because their idempotency key had been used for the same request.',
      labelNames: ['grpc_service', 'grpc_method'],
      registers,
    }).tallies;
    const authCache = talliedCounter<'result'>({
      name: 'credits_auth_cache_lookups_total',
      help: 'API key checks by whether the key cache answered (hit) or the database did (miss).',
      labelNames: ['result'],
      registers,
    });
    this.groupSizes = new Histogram({
      name: 'credits_group_commit_size',
      help: 'Members per group-committed statement or transaction, by group commit: keyed_calls (transactions), keyless_statements, balance_reads, page_reads, hold_reads.',
      labelNames: ['group'],
      buckets: [1, 2, 4, 8, 16, 24, 32],
      registers,
    });
    this.sweeps = new Counter({ name: 'credits_expiry_sweeps_total', help: 'Expiry sweeps run by this process, by outcome (ok, failed).', labelNames: ['outcome'], registers });
    this.sweptBalances = new Counter({ name: 'credits_expiry_settled_balances_total', help: 'Balances whose due expirations (lots and holds) the sweep settled.', registers });
    this.lapsedRedemptions = new Counter({
      name: 'credits_expiry_lapsed_redemptions_total',
      help: 'Held coupon redemptions past hold_until whose cancellation (and REDEMPTION_CANCELED event) the sweep recorded (a redemption or update of the coupon, or a revoke of a credit issued from it, records them first when it comes before the sweep).',
      registers,
    });
    this.databaseUp = new Gauge({ name: 'credits_database_up', help: '1 while the readiness check reaches PostgreSQL, 0 while it does not.', registers });
    this.databaseUp.set(1); // the server starts once the database answered
    this.authHit = authCache.tallies.child({ result: 'hit' });
    this.authMiss = authCache.tallies.child({ result: 'miss' });
    authCache.counter.inc({ result: 'hit' }, 0);
    authCache.counter.inc({ result: 'miss' }, 0);
    for (const outcome of ['ok', 'failed']) this.sweeps.labels(outcome).inc(0);
  }

  /** The metric children of a method ('/package.Service/Method'), made on its first call; `type` as go-grpc-prometheus names it. */
  method(path: string, type: GrpcType = 'unary'): MethodMetrics {
    let found = this.methods.get(path);
    if (!found) {
      const slash = path.lastIndexOf('/');
      const service = path.slice(1, slash);
      const method = path.slice(slash + 1);
      const labels = { grpc_type: type, grpc_service: service, grpc_method: method };
      const byCode = new Map<status, Inc>();
      found = {
        started: this.started.child(labels),
        received: this.received.child(labels),
        sent: this.sent.child(labels),
        replayed: this.replays.child({ grpc_service: service, grpc_method: method }),
        handling: this.handling.labels(labels),
        handled: (code) => {
          let child = byCode.get(code);
          if (!child) byCode.set(code, (child = this.handled.child(Object.assign({}, labels, { grpc_code: grpcCodeLabel(code) }))));
          return child;
        },
      };
      this.methods.set(path, found);
    }
    return found;
  }

  /** Counts an API key check answered by the cache (hit) or by the database (miss). */
  readonly authLookup = (cached: boolean): void => (cached ? this.authHit : this.authMiss).inc();

  /** An observer of one group commit's group sizes, under `name`. */
  groupCommit(name: string): (size: number) => void {
    const child = this.groupSizes.labels(name);
    return (size) => child.observe(size);
  }

  /** One run of the expiry sweep: failed when a part of it failed; what the parts that ran did. */
  expirySweep(run: { failed: boolean; settled: number; lapsedRedemptions: number }): void {
    this.sweeps.labels(run.failed ? 'failed' : 'ok').inc();
    this.sweptBalances.inc(run.settled);
    this.lapsedRedemptions.inc(run.lapsedRedemptions);
  }

  /**
   * An observer of how long after its create_time an event went out on a
   * stream (seconds): the event stream lag, made on first use.
   */
  eventStreamLag(): (seconds: number) => void {
    this.streamLag ??= new Histogram({
      name: 'credits_event_stream_lag_seconds',
      help: 'Seconds from an event being written to a stream sending it (StreamEvents), for events written while the stream was open (not those it replays from its cursor).',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    const histogram = this.streamLag;
    return (seconds) => histogram.observe(seconds);
  }

  databaseReachable(up: boolean): void {
    this.databaseUp.set(up ? 1 : 0);
  }

  /**
   * Gauges of the connection pool, read from its counters on each scrape.
   * `lent`: the connections lent out (ConnectionsInUse); the pool's own
   * total less idle also counts connections still being opened, which a
   * database that hangs keeps there: in use they looked like an exhausted
   * pool.
   */
  observeDatabasePool(pool: () => PoolCounters | undefined, size: number, lent: () => number): void {
    const registers = [this.registry];
    const read = (pick: (p: PoolCounters) => number) =>
      function (this: Gauge) {
        const counters = pool();
        if (counters) this.set(pick(counters));
      };
    new Gauge({ name: 'credits_db_pool_connections_in_use', help: 'Pooled connections lent out (running a statement or a transaction).', registers, collect: read(() => lent()) });
    new Gauge({
      name: 'credits_db_pool_connections_opening',
      help: 'Pooled connections being opened (many for long: the database does not answer).',
      registers,
      collect: read((p) => Math.max(0, p.totalCount - p.idleCount - lent())),
    });
    new Gauge({ name: 'credits_db_pool_connections_idle', help: 'Pooled connections open and idle.', registers, collect: read((p) => p.idleCount) });
    new Gauge({ name: 'credits_db_pool_waiting', help: 'Requests waiting for a pooled connection.', registers, collect: read((p) => p.waitingCount) });
    new Gauge({ name: 'credits_db_pool_max_connections', help: 'The pool size (CREDITS_DB_POOL_SIZE).', registers }).set(size);
  }

  /** The database clock's offset from this server's and how long ago DatabaseClock measured it (read on each scrape). */
  observeDatabaseClock(clock: { readonly offset: number; readonly sinceMeasured: number }): void {
    const registers = [this.registry];
    const inSeconds = (ms: () => number) =>
      function (this: Gauge) {
        this.set(ms() / 1000);
      };
    new Gauge({
      name: 'credits_db_clock_offset_seconds',
      help: "How far the database's clock is ahead of this server's (negative: behind), as last measured; 0 when they agree within the measure.",
      registers,
      collect: inSeconds(() => clock.offset),
    });
    new Gauge({
      name: 'credits_db_clock_measure_age_seconds',
      help: "Seconds since this server last measured the database's clock (it does every minute), or since it started while no measure has succeeded; the offset is as old.",
      registers,
      collect: inSeconds(() => clock.sinceMeasured),
    });
  }

  /**
   * Active holds per currency, by one query per scrape (bounded by
   * `timeoutMs`: a scrape while the database is away answers without them).
   */
  observeHolds(read: HoldsReader, timeoutMs = 1000): void {
    // Both gauges of one scrape share one query (the registry collects them at once).
    let pending: Promise<Awaited<ReturnType<HoldsReader>> | undefined> | undefined;
    // The query itself, until it settles: a scrape while it still runs (a
    // database that hangs) waits for it again rather than starting another,
    // which took one more pool connection per scrape until the database answered.
    let reading: Promise<Awaited<ReturnType<HoldsReader>> | undefined> | undefined;
    const rows = () => {
      if (!pending) {
        reading ??= read()
          .catch(() => undefined)
          .finally(() => (reading = undefined));
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
        pending = Promise.race([reading, timeout]).finally(() => {
          clearTimeout(timer);
          pending = undefined;
        });
      }
      return pending;
    };
    const gauge = (name: string, help: string, value: (row: { holds: number; held: bigint }) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['currency'],
        registers: [this.registry],
        async collect() {
          const found = await rows();
          this.reset();
          for (const row of found ?? []) this.labels(row.currency).set(value(row));
        },
      });
    gauge('credits_holds_active', 'Active (unexpired, not captured or released) holds, by currency.', (row) => row.holds);
    gauge('credits_holds_active_amount', 'Minor units kept by active holds, by currency.', (row) => Number(row.held));
  }

}
