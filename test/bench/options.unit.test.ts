import { expect } from 'chai';
import { parseOptions, UsageError, type BenchOptions } from '../../bench/options';
import { describeEchoRounds, ratioAgainst } from '../../bench/report';
import { ECHO_TARGETS, SCENARIOS } from '../../bench/scenarios';

describe('bench options (unit)', () => {
  const parse = (argv: string[]) => parseOptions(argv) as BenchOptions;

  it('--echo-rounds: 0 unless given, needs the echo baseline', () => {
    expect(parse([]).echoRounds).to.equal(0);
    expect(parse(['--baselines', 'echo', '--echo-rounds', '3']).echoRounds).to.equal(3);
    expect(parse(['--echo-rounds', '2']).echoRounds, 'every baseline by default, echo among them').to.equal(2);
    expect(() => parse(['--baselines', 'none', '--echo-rounds', '2'])).to.throw(UsageError, /needs the echo baseline/);
    expect(() => parse(['--baselines', 'pgbench', '--echo-rounds', '1'])).to.throw(UsageError, /needs the echo baseline/);
    expect(parse(['--baselines', 'none', '--echo-rounds', '0']).echoRounds).to.equal(0);
    expect(() => parse(['--echo-rounds=-1'])).to.throw(UsageError, /--echo-rounds must be an integer >= 0/);
  });

  it('echo targets name scenarios that have an echo run (not variants), and say met or not in figures that agree', () => {
    for (const name of Object.keys(ECHO_TARGETS)) {
      const scenario = SCENARIOS.find((s) => s.name === name);
      expect(scenario, name).to.not.equal(undefined);
      expect(scenario!.variantOf, `${name} is a variant: it has no echo run of its own`).to.equal(undefined);
    }
    expect(describeEchoRounds('add', { value: 0.52, median: 0.525, rounds: [0.5, 0.55], callsPerSec: [], target: 0.6 })).to.equal(
      '**add** ÷ echo: 0.52× (target ≥ 0.6×: NOT met; 2 alternating rounds, each 0.50×, 0.55×, median 0.53×)',
    );
    expect(describeEchoRounds('get-balance', { value: 0.7, median: 0.7, rounds: [0.7], callsPerSec: [], target: 0.7 })).to.contain('target ≥ 0.7×: met;');
    expect(describeEchoRounds('list-page', {
        value: 0.47,
        median: 0.47,
        rounds: [0.44, 0.5],
        callsPerSec: [
          { service: 2870, echo: 6598, errors: 0 },
          { service: 3000, echo: 6000, errors: 3 },
        ],
        target: 0.5,
      })).to.equal(
      '**list-page** ÷ echo: 0.47× (target ≥ 0.5×: NOT met; 2 alternating rounds, each 0.44×, 0.50×, median 0.47×; echo at 6,000–6,598 calls/s; 3 calls failed)',
    );
    // Below the target by less than two places show: three places, not "0.50×" beside "NOT met".
    expect(describeEchoRounds('redeem-credit', { value: 0.49847, median: 0.51, rounds: [0.49, 0.53], callsPerSec: [], target: 0.5 })).to.equal(
      '**redeem-credit** ÷ echo: 0.498× (target ≥ 0.5×: NOT met; 2 alternating rounds, each 0.49×, 0.53×, median 0.51×)',
    );
    expect(ratioAgainst(0.5, 0.5)).to.equal('0.50×');
    expect(ratioAgainst(0.523, 0.6)).to.equal('0.52×');
    expect(ratioAgainst(0.9449, 0.95)).to.equal('0.94×');
    expect(ratioAgainst(0.94996, 0.95)).to.equal('0.94996×');
    expect(ratioAgainst(0.97, 0.95)).to.equal('0.97×');
    expect(ratioAgainst(Number.NaN, 0.5), 'no calls in any pair').to.equal('-');
  });
});
