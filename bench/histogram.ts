/**
 * A log-linear latency histogram in the spirit of HdrHistogram: constant
 * memory, mergeable, and every recorded value is reported within 1% of its
 * true value. Values are microseconds.
 */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
/** Values below this are counted exactly (one bucket per microsecond). */
const LINEAR_LIMIT = 100;
/** 100 µs .. ~10 minutes in 1% steps. */
const LOG_BUCKETS = Math.ceil(Math.log(600e6 / LINEAR_LIMIT) / LOG_GROWTH) + 1;

export interface HistogramJson {
  counts: Array<[number, number]>;
}

export class Histogram {
  private readonly counts = new Float64Array(LINEAR_LIMIT + LOG_BUCKETS);
  count = 0;
  sum = 0;
  max = 0;

  record(micros: number): void {
    const v = micros < 0 ? 0 : micros;
    this.counts[bucketOf(v)]! += 1;
    this.count += 1;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  merge(other: Histogram): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.sum += other.sum;
    this.max = Math.max(this.max, other.max);
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.sum = 0;
    this.max = 0;
  }

  /** The value at quantile q (0..1), in microseconds; 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(valueOf(i), this.max);
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  toJSON(): HistogramJson & { count: number; sum: number; max: number } {
    const counts: Array<[number, number]> = [];
    this.counts.forEach((c, i) => {
      if (c > 0) counts.push([i, c]);
    });
    return { counts, count: this.count, sum: this.sum, max: this.max };
  }

  static fromJSON(json: ReturnType<Histogram['toJSON']>): Histogram {
    const h = new Histogram();
    for (const [i, c] of json.counts) h.counts[i] = c;
    h.count = json.count;
    h.sum = json.sum;
    h.max = json.max;
    return h;
  }
}

function bucketOf(v: number): number {
  if (v < LINEAR_LIMIT) return Math.floor(v);
  const i = LINEAR_LIMIT + Math.floor(Math.log(v / LINEAR_LIMIT) / LOG_GROWTH);
  return Math.min(i, LINEAR_LIMIT + LOG_BUCKETS - 1);
}

/** The upper edge of a bucket (a conservative report of the values in it). */
function valueOf(i: number): number {
  if (i < LINEAR_LIMIT) return i + 1;
  return LINEAR_LIMIT * Math.pow(GROWTH, i - LINEAR_LIMIT + 1);
}
