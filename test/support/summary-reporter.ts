import Mocha from 'mocha';

/**
 * mocha's spec output followed by one line `N passed, N failed[, N skipped]`,
 * the summary CI reads. It prints even when no test ran ("0 passed, 0 failed").
 */
class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const stats = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
      const skipped = stats.pending > 0 ? `, ${stats.pending} skipped` : '';
      process.stdout.write(`${stats.passes} passed, ${stats.failures} failed${skipped}\n`);
    });
  }
}

export = SummaryReporter;
