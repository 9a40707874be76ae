import { expect } from 'chai';
import { RECORDING_SERVER_OPTIONS } from '../../bench/recording-server';
import { startGrpcServer } from '../../src/grpc/server';
import { createLogger } from '../../src/logger';
import { Metrics } from '../../src/observability/metrics';
import { openTestDataSource } from '../support/database';

/** One series' value in the registry's text exposition (0 when absent). */
async function valueOf(metrics: Metrics, series: string): Promise<number> {
  const line = (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/**
 * The bench's recording server takes every statement of a pooled connection
 * for the sampled call's: an expiry sweep that ran inside a sample was
 * replayed by pgbench as part of the call (a full run's deduct baseline
 * opened a transaction it never ended, and every client aborted). It runs
 * without housekeeping.
 */
describe('bench recording server: a server without housekeeping', function () {
  this.timeout(20_000);

  it("runs no expiry sweep with the recording server's options, where a server with housekeeping sweeps on its schedule", async () => {
    const sweeps: Record<string, number> = {};
    for (const [name, options] of [
      ['housekeeping', { address: '127.0.0.1:0' }],
      ['recording', RECORDING_SERVER_OPTIONS],
    ] as const) {
      const dataSource = await openTestDataSource(2);
      const metrics = new Metrics({ processMetrics: false });
      const grpc = await startGrpcServer({ dataSource, logger: createLogger('silent'), metrics }, Object.assign({ expirySweepSeconds: 0.05 }, options));
      try {
        await new Promise((resolve) => setTimeout(resolve, 600));
        sweeps[name] = await valueOf(metrics, 'credits_expiry_sweeps_total{outcome="ok"}');
      } finally {
        await grpc.shutdown(5_000);
        await dataSource.destroy();
      }
    }
    expect(sweeps.housekeeping, 'with housekeeping').to.be.greaterThan(0);
    expect(sweeps.recording, "the recording server's").to.equal(0);
  });
});
