import { expect } from 'chai';
import { inBatches } from '../../src/common/batches';
import { runPeriodically } from '../../src/common/periodic';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await tick(5);
}

describe('runPeriodically (unit)', () => {
  it('runs first after a random part of the interval, not a whole one (a process living less than the interval still runs it)', async () => {
    let runs = 0;
    const job = runPeriodically(
      60 * 60 * 1000,
      async () => {
        runs++;
      },
      (err) => expect.fail(String(err)),
      () => 0,
    );
    await until(() => runs === 1);
    await job.stop();
    expect(runs).to.equal(1);
  });

  it('never overlaps runs: the next starts an interval after the previous ended', async () => {
    let active = 0;
    let mostAtOnce = 0;
    let runs = 0;
    const job = runPeriodically(
      1,
      async () => {
        active++;
        mostAtOnce = Math.max(mostAtOnce, active);
        await tick(20);
        active--;
        runs++;
      },
      (err) => expect.fail(String(err)),
      () => 0,
    );
    await until(() => runs >= 4);
    await job.stop();
    expect(mostAtOnce).to.equal(1);
  });

  it('stop() tells the run in progress (its signal) and waits for it; nothing runs after', async () => {
    let started = 0;
    let finished = 0;
    let sawAbort = false;
    const job = runPeriodically(
      1,
      async (signal) => {
        started++;
        while (!signal.aborted) await tick(2);
        sawAbort = true;
        await tick(20);
        finished++;
      },
      (err) => expect.fail(String(err)),
      () => 0,
    );
    await until(() => started === 1);
    await job.stop();
    expect(sawAbort).to.equal(true);
    expect(finished, 'stop() resolved before the run ended').to.equal(1);
    await tick(30);
    expect(started).to.equal(1);
  });

  it('a run that throws goes to onError and the schedule goes on', async () => {
    const errors: unknown[] = [];
    let runs = 0;
    const job = runPeriodically(
      1,
      async () => {
        runs++;
        throw new Error(`run ${runs}`);
      },
      (err) => errors.push(err),
      () => 0,
    );
    await until(() => runs >= 3);
    await job.stop();
    expect(errors.length).to.be.at.least(2);
    expect((errors[0] as Error).message).to.equal('run 1');
  });

  it('inBatches stops after the batch in progress once its signal aborts', async () => {
    const stopping = new AbortController();
    let steps = 0;
    const total = await inBatches(
      10,
      async (n) => {
        steps++;
        if (steps === 3) stopping.abort();
        return n; // always a full batch: without the signal it would never end
      },
      stopping.signal,
    );
    expect(steps).to.equal(3);
    expect(total).to.equal(30);
  });
});
