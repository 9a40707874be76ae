import fs from 'node:fs';
import path from 'node:path';

/** Settings read from the environment once, at start, and validated. */
export interface Config {
  /** PostgreSQL connection string; absent means "run the embedded PostgreSQL". */
  databaseUrl: string | undefined;
  /**
   * PostgreSQL itself (or a session-mode pool) for what needs a session of
   * its own, when DATABASE_URL is a transaction-mode pooler: the migrations'
   * advisory lock at start and the LISTEN for revocations.
   */
  sessionDatabaseUrl: string | undefined;
  /** Folder of the embedded PostgreSQL's data (git-ignored `.data/` by default; as root it only names the cluster, see embedded-postgres.ts). */
  dataDir: string;
  /** host:port the gRPC server binds to. */
  address: string;
  logLevel: string;
  /** Connections in the pool of each process. */
  dbPoolSize: number;
  /** How long a new connection may take before the call fails with UNAVAILABLE. */
  dbConnectTimeoutMs: number;
  /** The most one statement of a call may take (a backstop against a stuck statement holding a balance lock); not for migrations or `credits verify`. */
  dbStatementTimeoutMs: number;
  /** How long in-flight calls may take to finish on SIGTERM before they are cut. */
  shutdownGraceMs: number;
  /** How long idempotency keys and their stored responses are kept. */
  idempotencyRetentionHours: number;
  /** How long a validated API key is remembered; revocations are pushed (see Authenticator), not waited out. */
  authCacheMs: number;
  /** How often each replica sweeps expirations due (lots and holds); a write settles its own balance first anyway. */
  expirySweepSeconds: number;
  /** How long events are kept for readers (older cursors are CURSOR_EXPIRED). */
  eventRetentionHours: number;
  /** CREDITS_EVENT_CURSOR_VERSION: the event cursors handed out, 1 (any tenant's) or 2 (naming their tenant); both are read. */
  eventCursorVersion: 1 | 2;
  /** CREDITS_EVENTS=off, the benchmark's switch: changes write no events (readers miss them for good). */
  eventsOff: boolean;
  /**
   * CREDITS_REDEMPTION_EVENT_SNAPSHOTS=on: REDEMPTION_CREATED events store
   * their payload, as versions before 1765400000000 did, instead of naming
   * their redemption; for a rolling deploy while replicas of those versions
   * still serve event streams (they cannot read a reference). Default off.
   */
  redemptionEventSnapshots: boolean;
  tls: { certFile: string; keyFile: string; clientCaFile: string | undefined } | undefined;
  /** host:port of the Prometheus /metrics endpoint; undefined when `CREDITS_METRICS_ADDRESS=off`. */
  metricsAddress: string | undefined;
  /** OpenTelemetry tracing, on when the standard OTLP endpoint variables are set (see src/observability/tracing.ts). */
  tracing: TracingConfig | undefined;
}

export interface TracingConfig {
  /** OTLP/HTTP encoding: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`, default http/protobuf. */
  protocol: 'http/protobuf' | 'http/json';
  /** `OTEL_SERVICE_NAME`, default `credits`. */
  serviceName: string;
  /** `OTEL_BSP_SCHEDULE_DELAY`: how long spans wait to be sent in a batch (ms). */
  scheduleDelayMs: number;
}

/** Defaults that also apply where a server is started without a Config (tests, the benchmark). */
export const DEFAULT_IDEMPOTENCY_RETENTION_HOURS = 7 * 24;
export const DEFAULT_AUTH_CACHE_MS = 5_000;
export const DEFAULT_EXPIRY_SWEEP_SECONDS = 60;
/** CREDITS_DB_STATEMENT_TIMEOUT_MS's default, and createDataSource's when it is given none (tests, the benchmark). */
export const DEFAULT_DB_STATEMENT_TIMEOUT_MS = 30_000;
export const DEFAULT_EVENT_RETENTION_HOURS = 7 * 24;

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    // Digits only: Number() also reads ' ' (0), '1e1' and '0x10'.
    const value = /^\d{1,15}$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
      return fallback;
    }
    return value;
  };

  const databaseUrl = env.DATABASE_URL === '' ? undefined : env.DATABASE_URL;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }
  const sessionDatabaseUrl = env.CREDITS_SESSION_DATABASE_URL || undefined;
  if (sessionDatabaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(sessionDatabaseUrl)) {
    problems.push('CREDITS_SESSION_DATABASE_URL must be a postgres:// or postgresql:// URL');
  }
  if (sessionDatabaseUrl !== undefined && databaseUrl === undefined) problems.push('CREDITS_SESSION_DATABASE_URL needs DATABASE_URL');
  /** host:port with a port from 0 to 65535. */
  const hostPort = (value: string) => {
    const port = /^.+:(\d{1,5})$/.exec(value)?.[1];
    return port !== undefined && Number(port) <= 65_535;
  };
  const address = env.CREDITS_ADDRESS || '0.0.0.0:50051';
  if (!hostPort(address)) problems.push(`CREDITS_ADDRESS must be host:port (port 0 to 65535), got "${address}"`);

  const logLevel = env.LOG_LEVEL || 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    problems.push(`LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent; got "${logLevel}"`);
  }

  const events = env.CREDITS_EVENTS || 'on';
  if (events !== 'on' && events !== 'off') problems.push(`CREDITS_EVENTS must be on or off, got "${events}"`);
  const redemptionSnapshots = env.CREDITS_REDEMPTION_EVENT_SNAPSHOTS || 'off';
  if (redemptionSnapshots !== 'on' && redemptionSnapshots !== 'off') {
    problems.push(`CREDITS_REDEMPTION_EVENT_SNAPSHOTS must be on or off, got "${redemptionSnapshots}"`);
  }

  const certFile = env.CREDITS_TLS_CERT || undefined;
  const keyFile = env.CREDITS_TLS_KEY || undefined;
  const clientCaFile = env.CREDITS_TLS_CLIENT_CA || undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push('CREDITS_TLS_CERT and CREDITS_TLS_KEY must be given together');
  }
  if (clientCaFile !== undefined && certFile === undefined) {
    problems.push('CREDITS_TLS_CLIENT_CA needs CREDITS_TLS_CERT and CREDITS_TLS_KEY');
  }
  for (const [name, file] of [['CREDITS_TLS_CERT', certFile], ['CREDITS_TLS_KEY', keyFile], ['CREDITS_TLS_CLIENT_CA', clientCaFile]] as const) {
    if (file === undefined) continue;
    try {
      fs.accessSync(file, fs.constants.R_OK);
    } catch (err) {
      problems.push(`${name} must be a readable file, got "${file}" (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    }
  }

  const metricsAddress = env.CREDITS_METRICS_ADDRESS || '0.0.0.0:9464';
  if (metricsAddress !== 'off' && !hostPort(metricsAddress)) {
    problems.push(`CREDITS_METRICS_ADDRESS must be host:port (port 0 to 65535) or off, got "${metricsAddress}"`);
  }

  // The exporter itself reads the endpoint, headers, timeout and compression
  // variables; here only whether tracing is on and what the SDK package does not read.
  let tracing: TracingConfig | undefined;
  if ((env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) && env.OTEL_SDK_DISABLED !== 'true' && env.OTEL_TRACES_EXPORTER !== 'none') {
    const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || 'http/protobuf';
    if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
      problems.push(`OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or http/json (the collector's HTTP port, usually 4318), got "${protocol}"`);
    }
    tracing = {
      protocol: protocol === 'http/json' ? 'http/json' : 'http/protobuf',
      serviceName: env.OTEL_SERVICE_NAME || 'credits',
      scheduleDelayMs: int('OTEL_BSP_SCHEDULE_DELAY', 5000, 1, 600_000),
    };
  }

  const config: Config = {
    databaseUrl,
    sessionDatabaseUrl,
    dataDir: path.resolve(env.CREDITS_DATA_DIR || path.join(__dirname, '..', '..', '.data')),
    address,
    logLevel,
    dbPoolSize: int('CREDITS_DB_POOL_SIZE', 20, 1, 500),
    dbConnectTimeoutMs: int('CREDITS_DB_CONNECT_TIMEOUT_MS', 3000, 100, 600_000),
    dbStatementTimeoutMs: int('CREDITS_DB_STATEMENT_TIMEOUT_MS', DEFAULT_DB_STATEMENT_TIMEOUT_MS, 100, 3_600_000),
    shutdownGraceMs: int('CREDITS_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    idempotencyRetentionHours: int('CREDITS_IDEMPOTENCY_RETENTION_HOURS', DEFAULT_IDEMPOTENCY_RETENTION_HOURS, 1, 24 * 3650),
    authCacheMs: int('CREDITS_AUTH_CACHE_MS', DEFAULT_AUTH_CACHE_MS, 0, 300_000),
    expirySweepSeconds: int('CREDITS_EXPIRY_SWEEP_SECONDS', DEFAULT_EXPIRY_SWEEP_SECONDS, 1, 86_400),
    eventRetentionHours: int('CREDITS_EVENT_RETENTION_HOURS', DEFAULT_EVENT_RETENTION_HOURS, 1, 24 * 3650),
    eventCursorVersion: int('CREDITS_EVENT_CURSOR_VERSION', 1, 1, 2) as 1 | 2,
    eventsOff: events === 'off',
    redemptionEventSnapshots: redemptionSnapshots === 'on',
    tls: certFile && keyFile ? { certFile, keyFile, clientCaFile } : undefined,
    metricsAddress: metricsAddress === 'off' ? undefined : metricsAddress,
    tracing,
  };
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  return config;
}
