import type { Histogram } from './histogram';
import type { SqlUnit } from './sql-recorder';

/** Messages between the orchestrator and the processes it forks (IPC, advanced serialization). */

export interface GrpcTarget {
  /** Scenario name, for per-target counts in mixed loads. */
  name: string;
  path: string;
  /** Pre-encoded requests; call i sends requests[i % length]. */
  requests: Uint8Array[];
  /** Share of calls (mixed loads); any positive number. */
  weight: number;
  /** Send a fresh `idempotency-key` with every call, as @credits/client does. */
  idempotencyKeys?: boolean;
  /** From the start of the measurement window on, send these instead (a fresh capped coupon for the measured run). */
  measuredRequests?: Uint8Array[];
  /** Refusals (ErrorInfo reasons) that are the expected answer: counted as answered calls in `refused`, not as errors. */
  expectedRefusals?: string[];
}

interface LoadTiming {
  concurrency: number;
  warmupSec: number;
  durationSec: number;
}

export type LoadSpec =
  | (LoadTiming & { mode: 'grpc'; address: string; apiKey: string; targets: GrpcTarget[]; /** More servers: calls go round-robin over all. */ moreAddresses?: string[] })
  | (LoadTiming & {
      mode: 'sql';
      databaseUrl: string;
      poolSize: number;
      units: SqlUnit[];
      /** The varying values of the recorded call, and those of each call of the cycle. */
      sample: string[];
      variants: string[][];
    });

export interface LoadResult {
  /** Calls completed inside the measurement window. */
  calls: number;
  seconds: number;
  histogram: ReturnType<Histogram['toJSON']>;
  /** Failed calls in the window by gRPC status name or SQLSTATE. */
  errors: Record<string, number>;
  /** Calls in the window answered with an expected refusal, by reason (also in `calls` and the latencies). */
  refused?: Record<string, number>;
  /** Calls and errors per target (mixed loads). */
  perTarget: Record<string, { calls: number; errors: number }>;
  /** Mean response size in bytes (gRPC). */
  responseBytes: number | undefined;
}

export type FromLoadGenerator =
  | { type: 'ready' }
  | { type: 'window-start' }
  | { type: 'window-end' }
  | { type: 'progress'; second: number; phase: 'warm-up' | 'measure'; calls: number; errors: number; p50: number; p99: number }
  | { type: 'result'; result: LoadResult }
  | { type: 'failed'; message: string };

export type ToLoadGenerator = { type: 'run'; spec: LoadSpec };

export type ToEchoServer = { type: 'respond-with'; response: Uint8Array };
export type FromEchoServer = { type: 'listening'; port: number } | { type: 'ok' };

/** Event stream consumers (bench/event-consumers.ts): streams opened on the server under load, measuring delivery lag. */
export type ToEventConsumers =
  | { type: 'start'; address: string; apiKey: string; count: number; afterCursor: string }
  | { type: 'window-start' }
  | { type: 'window-end' }
  /** Wait until `expected` events reached every stream (or `timeoutMs`), then answer. */
  | { type: 'finish'; expected: number; timeoutMs: number };

export interface EventConsumersResult {
  /** Streams that were open. */
  streams: number;
  /** Delivery lag of the events received in the window (receipt − the event's create_time), µs, every stream merged. */
  lag: ReturnType<Histogram['toJSON']>;
  /** Events each stream received in the window. */
  inWindow: number[];
  /** Events each stream received in all, and how many of them it had already received. */
  received: number[];
  duplicates: number[];
  /** Streams that ended or failed, with why. */
  errors: string[];
}

export type FromEventConsumers = { type: 'ready' } | { type: 'result'; result: EventConsumersResult } | { type: 'failed'; message: string };
