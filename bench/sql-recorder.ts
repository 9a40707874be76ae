import { randomUUID } from 'node:crypto';
import pg from 'pg';
// pg's own conversion of a parameter to what it sends (Date → text, array → literal, ...).
const { prepareValue } = require('pg/lib/utils') as { prepareValue(value: unknown): unknown };

/** One statement as the server sent it, parameters as pg put them on the wire (text, bytes or null). */
export interface RecordedStatement {
  text: string;
  /** Set when the server used a named prepared statement. */
  name?: string;
  values: Array<string | Buffer | null>;
  /** Position in the call. */
  index: number;
  /** The first row it answered, while recording (dropped before replay). */
  firstRow?: Record<string, unknown>;
  /**
   * Parameters that are values an earlier statement of the call answered
   * (an id from INSERT … RETURNING): the replay takes them from its own
   * results, pgbench from \gset variables.
   */
  fromResult?: Array<{ param: number; statement: number; column: string }>;
  /**
   * Indexes of parameters the server made itself (ids from randomUUID):
   * they differed between two recordings of the same request, and the
   * replay makes fresh ones on every call.
   */
  generated?: number[];
  /**
   * Per generated parameter that is text holding ids (the JSON of a group's
   * requests, which carries the ids the server made for a redemption or an
   * Add): the ids in it that the other recording did not have. The replay
   * puts fresh ones in their place, and keeps the rest (the tenant's, a
   * coupon's).
   */
  embeddedIds?: Record<number, string[]>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const UUIDS_IN_TEXT = new RegExp(UUID.source.slice(1, -1), 'gi');
const UUID_ARRAY = /^\{"?[0-9a-f-]{36}"?(,"?[0-9a-f-]{36}"?)*\}$/i;

/**
 * Compares two recordings of the same request and marks the parameters that
 * differ as generated. Answers false when the two calls sent different SQL
 * (then nothing is marked).
 */
export function markGenerated(first: RecordedStatement[], second: RecordedStatement[]): boolean {
  if (first.length !== second.length || first.some((st, k) => st.text !== second[k]!.text || st.values.length !== second[k]!.values.length)) return false;
  first.forEach((st, k) => {
    const other = second[k]!;
    const fromResult = new Set(st.fromResult?.map((d) => d.param));
    const generated = st.values.flatMap((v, i) => {
      const w = other.values[i];
      const same = Buffer.isBuffer(v) && Buffer.isBuffer(w) ? v.equals(w) : v === w;
      return same || fromResult.has(i) ? [] : [i];
    });
    if (generated.length > 0) st.generated = generated;
    for (const i of generated) {
      const v = st.values[i];
      const w = other.values[i];
      if (typeof v !== 'string' || typeof w !== 'string' || UUID.test(v) || UUID_ARRAY.test(v)) continue;
      const ids = [...new Set(v.match(UUIDS_IN_TEXT) ?? [])].filter((id) => !w.includes(id));
      if (ids.length > 0) (st.embeddedIds ??= {})[i] = ids;
    }
  });
  return true;
}

/**
 * Finds parameters that repeat a value an earlier statement answered and
 * that no earlier statement was given: the server read them from that
 * result (an id from INSERT … RETURNING fed to the next statement).
 */
export function markResultDependencies(statements: RecordedStatement[]): void {
  const given = new Set<string>();
  statements.forEach((st, k) => {
    st.values.forEach((v, i) => {
      if (typeof v !== 'string' || given.has(v)) return;
      for (let j = k - 1; j >= 0; j--) {
        const row = statements[j]!.firstRow;
        const column = row && Object.keys(row).find((c) => row[c] !== null && row[c] !== undefined && String(row[c]) === v);
        if (column) {
          (st.fromResult ??= []).push({ param: i, statement: j, column });
          return;
        }
      }
    });
    for (const v of st.values) if (typeof v === 'string') given.add(v);
  });
}

/** The statements without what only the recording needs (rows), for sending to a replay. */
export function forReplay(statements: RecordedStatement[]): RecordedStatement[] {
  return statements.map(({ firstRow: _row, ...rest }) => rest);
}

/**
 * A fresh value in the shape of a generated one: new UUIDs, in text the
 * ids `embedded` names replaced by new ones; anything else (a timestamp) is
 * kept.
 */
export function regenerate(value: string | Buffer | null, embedded?: string[]): string | Buffer | null {
  if (typeof value !== 'string') return value;
  if (embedded) return embedded.reduce((text, id) => text.split(id).join(randomUUID()), value);
  if (UUID.test(value)) return randomUUID();
  if (UUID_ARRAY.test(value)) return `{${value.slice(1, -1).split(',').map((e) => (e.startsWith('"') ? `"${randomUUID()}"` : randomUUID())).join(',')}}`;
  return value;
}

/**
 * pgbench SQL for a generated value, or undefined to pass the recorded
 * value. Text with ids in it (`embedded`, `variable` holding the recorded
 * text) gets new ones from PostgreSQL, where the service made them itself:
 * they cost the replay about 2 µs each.
 */
function pgbenchGenerated(value: string | Buffer | null, embedded?: string[], variable?: string): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (embedded && variable) return embedded.reduce((sql, id) => `replace(${sql}, '${id}', gen_random_uuid()::text)`, `:${variable}`);
  if (UUID.test(value)) return 'gen_random_uuid()';
  if (UUID_ARRAY.test(value)) return `(SELECT array_agg(gen_random_uuid()) FROM generate_series(1, ${value.split(',').length}))`;
  return undefined;
}

/** What the replay runs as one piece: a statement on its own, or a transaction on one connection. */
export interface SqlUnit {
  transaction: boolean;
  statements: RecordedStatement[];
}

const TX_BEGIN = /^\s*(BEGIN|START\s+TRANSACTION)\b/i;
const TX_END = /^\s*(COMMIT|ROLLBACK|END)\b(?!\s+TO\b)/i;

let recording: RecordedStatement[] | undefined;
let installed = false;

/**
 * Wraps pg's Client.query (the driver TypeORM uses) so statements sent while
 * `record` runs are captured. Install it in the process whose server code
 * is to be recorded, before that code sends SQL.
 *
 * Only statements of pooled connections (pg-pool gives each client it hands
 * out a `release`) are the call's: the server's own connections (the
 * readiness probe, the LISTEN connections' keepalives) send `SELECT 1` on
 * their own schedule, and one that fell inside a sample made its two
 * recordings differ, so generated ids went undetected and pgbench replayed
 * them (a full run failed on batch-credits with a duplicate key).
 */
export function installSqlRecorder(): void {
  if (installed) return;
  installed = true;
  const proto = pg.Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const original = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    let entry: RecordedStatement | undefined;
    if (recording && typeof (this as { release?: unknown }).release === 'function') {
      const [config, values] = args;
      const text = typeof config === 'string' ? config : (config as { text?: string } | undefined)?.text;
      if (typeof text === 'string') {
        const given = Array.isArray(values) ? values : ((config as { values?: unknown[] }).values ?? []);
        const name = typeof config === 'object' && config !== null ? (config as { name?: string }).name : undefined;
        entry = { index: recording.length, text, ...(name ? { name } : {}), values: given.map(toWire) };
        recording.push(entry);
      }
    }
    const out = original.apply(this, args);
    if (entry && out && typeof (out as Promise<unknown>).then === 'function') {
      void (out as Promise<{ rows?: Array<Record<string, unknown>> }>).then(
        (result) => {
          if (result?.rows?.[0]) entry.firstRow = result.rows[0];
        },
        () => undefined,
      );
    }
    return out;
  };
}

function toWire(value: unknown): string | Buffer | null {
  const prepared = prepareValue(value);
  if (prepared === null || prepared === undefined) return null;
  return Buffer.isBuffer(prepared) ? prepared : String(prepared);
}

/** Runs `work` and answers the statements it sent. Not reentrant. */
export async function recordSql<T>(work: () => Promise<T>): Promise<{ result: T; statements: RecordedStatement[] }> {
  if (!installed) throw new Error('installSqlRecorder() first');
  const statements: RecordedStatement[] = [];
  recording = statements;
  try {
    return { result: await work(), statements };
  } finally {
    recording = undefined;
  }
}

/** Groups statements into replay units by the transactions they were sent in. */
export function toUnits(statements: RecordedStatement[]): SqlUnit[] {
  const units: SqlUnit[] = [];
  let open: SqlUnit | undefined;
  for (const statement of statements) {
    if (open) {
      open.statements.push(statement);
      if (TX_END.test(statement.text)) open = undefined;
    } else if (TX_BEGIN.test(statement.text)) {
      open = { transaction: true, statements: [statement] };
      units.push(open);
    } else {
      units.push({ transaction: false, statements: [statement] });
    }
  }
  return units;
}

/**
 * The parameters of call i: sample[k] replaced by actual[k] everywhere,
 * generated values made afresh, and values of earlier results taken from
 * `results` (the first rows this call's statements answered so far).
 */
export function substitute(
  statement: RecordedStatement,
  sample: string[],
  actual: string[],
  results: Array<Record<string, unknown> | undefined>,
): Array<string | Buffer | null> {
  let values = statement.generated
    ? statement.values.map((v, i) => (statement.generated!.includes(i) ? regenerate(v, statement.embeddedIds?.[i]) : v))
    : statement.values;
  if (sample.length > 0) {
    values = values.map((v) => {
      if (typeof v !== 'string') return v;
      const k = sample.indexOf(v);
      if (k !== -1) return actual[k]!;
      const element = singleElementOf(v);
      const j = element === undefined ? -1 : sample.indexOf(element);
      return j === -1 ? v : arrayLiteralOf(actual[j]!);
    });
  }
  if (statement.fromResult) {
    values = [...values];
    for (const d of statement.fromResult) {
      const value = results[d.statement]?.[d.column];
      if (value === undefined || value === null) throw new Error(`statement ${d.statement} answered no ${d.column} for statement ${statement.index}`);
      values[d.param] = toWire(value);
    }
  }
  return values;
}

/** The sample values that appear in no parameter (the replay could not vary them). */
export function unmatchedVarying(statements: RecordedStatement[], sample: string[]): string[] {
  return sample.filter((s) => !statements.some((st) => st.values.some((v) => v === s || (typeof v === 'string' && singleElementOf(v) === s))));
}

/**
 * The element of a one-element array literal as pg sends it (`{"c7"}`, from
 * a batch of one), or undefined: a varying value can hide in there.
 */
export function singleElementOf(literal: string): string | undefined {
  const quoted = /^\{"((?:[^"\\]|\\.)*)"\}$/.exec(literal);
  if (quoted) return quoted[1]!.replace(/\\(.)/g, '$1');
  const bare = /^\{([^",{}\\\s]+)\}$/.exec(literal);
  return bare ? bare[1] : undefined;
}

function arrayLiteralOf(element: string): string {
  return `{"${element.replace(/["\\]/g, '\\$&')}"}`;
}

/** A one-line description of a statement for reports. */
export function summarizeStatement(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 110 ? `${flat.slice(0, 107)}...` : flat;
}

/**
 * The recorded call as a pgbench script: constants become -D variables
 * (pgbench -M prepared sends them as untyped parameters, as pg does),
 * varying values become the scenario's pgbench expressions.
 */
export function toPgbenchScript(
  statements: RecordedStatement[],
  sample: string[],
  varying: { set: string[]; expressions: string[] },
): { script: string; defines: Record<string, string> } | { impossible: string } {
  if (varying.expressions.length !== sample.length) return { impossible: 'pgbench cannot derive this scenario’s varying values' };
  const defines: Record<string, string> = {};
  const lines = [...varying.set];
  const feeding = new Set(statements.flatMap((st) => st.fromResult?.map((d) => d.statement) ?? []));
  for (const st of statements) {
    for (const d of st.fromResult ?? []) {
      if (!/^[A-Za-z0-9_]+$/.test(d.column)) return { impossible: `pgbench cannot \\gset the column "${d.column}"` };
    }
  }
  statements.forEach((statement, s) => {
    const text = statement.text.replace(/\$(\d+)(?!\d)/g, (_, digits: string) => {
      const index = Number(digits) - 1;
      const value = statement.values[index];
      const earlier = statement.fromResult?.find((d) => d.param === index);
      if (earlier) return `:r${earlier.statement}_${earlier.column}`;
      if (value === undefined || value === null) return 'NULL';
      const embedded = statement.embeddedIds?.[index];
      const fresh = statement.generated?.includes(index) ? pgbenchGenerated(value, embedded, `p${s}_${digits}`) : undefined;
      if (fresh) {
        if (embedded) defines[`p${s}_${digits}`] = value as string;
        return fresh;
      }
      if (Buffer.isBuffer(value)) return `'\\x${value.toString('hex')}'::bytea`;
      const k = sample.indexOf(value);
      if (k !== -1) return varying.expressions[k]!;
      const element = singleElementOf(value);
      const j = element === undefined ? -1 : sample.indexOf(element);
      if (j !== -1) return `ARRAY[${varying.expressions[j]!}]`;
      // pgbench -D refuses an empty value.
      if (value === '') return `''`;
      const variable = `p${s}_${digits}`;
      defines[variable] = value;
      return `:${variable}`;
    });
    // pgbench ends a command at ';', or at \gset, which stores the one row it answers in variables.
    const body = text.trim().replace(/;\s*$/, '');
    lines.push(feeding.has(s) ? `${body} \\gset r${s}_` : `${body};`);
  });
  return { script: `${lines.join('\n')}\n`, defines };
}
