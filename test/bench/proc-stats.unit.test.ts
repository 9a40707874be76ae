import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { cpuSeconds, mainThreadCpuSeconds } from '../../bench/proc-stats';

/**
 * The bench's `thread %` column: a process's main thread apart from its
 * other threads (for Node.js, JavaScript apart from the garbage collector's
 * and libuv's helpers), read from /proc/<pid>/task/<pid>/stat.
 */
describe('bench process CPU (unit)', () => {
  it("counts a process's main thread apart from its other threads", () => {
    const processBefore = cpuSeconds(process.pid)!;
    const mainBefore = mainThreadCpuSeconds(process.pid)!;
    expect(mainBefore).to.be.a('number').within(0, processBefore);
    // A worker burns 0.3 s of CPU (the whole process's, as it sees it)
    // while this thread sleeps in Atomics.wait, using none.
    const signal = new Int32Array(new SharedArrayBuffer(4));
    new Worker(
      `const { workerData } = require('node:worker_threads');
       const start = process.cpuUsage();
       let spent = 0;
       while (spent < 300000) { const u = process.cpuUsage(start); spent = u.user + u.system; }
       Atomics.store(workerData, 0, 1);
       Atomics.notify(workerData, 0);`,
      { eval: true, workerData: signal },
    ).unref();
    Atomics.wait(signal, 0, 0);
    const processSpent = cpuSeconds(process.pid)! - processBefore;
    const mainSpent = mainThreadCpuSeconds(process.pid)! - mainBefore;
    expect(processSpent).to.be.at.least(0.25);
    expect(mainSpent).to.be.at.most(processSpent - 0.2);
  });

  it('answers undefined for a process that is gone', () => {
    const child = spawnSync(process.execPath, ['-e', '']);
    expect(child.status).to.equal(0);
    expect(mainThreadCpuSeconds(child.pid!)).to.equal(undefined);
    expect(cpuSeconds(child.pid!)).to.equal(undefined);
  });
});
