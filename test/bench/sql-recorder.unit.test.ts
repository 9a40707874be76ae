import { expect } from 'chai';
import { singleElementOf, substitute, toPgbenchScript, unmatchedVarying, type RecordedStatement } from '../../bench/sql-recorder';

/**
 * The benchmark's same-SQL baselines replay what one call sent with each
 * call's own varying values (the customer): a replay that kept the recorded
 * customer would turn an uncontended scenario into a hot-row one.
 */
describe('bench SQL replay (unit)', () => {
  const batchOfOne: RecordedStatement = {
    index: 0,
    name: 'apply',
    text: 'SELECT * FROM f($1::uuid[], $2::text[], $3::bigint[])',
    values: ['{"9b1c7a52-3d2e-4f51-9a0e-2f1d5c6b7a80"}', '{"c0"}', '{"100"}'],
  };

  it('reads the element of a one-element array literal as pg writes it', () => {
    expect(singleElementOf('{"c0"}')).to.equal('c0');
    expect(singleElementOf('{c0}')).to.equal('c0');
    expect(singleElementOf('{"a\\"b"}')).to.equal('a"b');
    expect(singleElementOf('{"a","b"}')).to.equal(undefined);
    expect(singleElementOf('{a,b}')).to.equal(undefined);
    expect(singleElementOf('c0')).to.equal(undefined);
  });

  it('varies a sample value inside an array parameter, leaving other parameters alone', () => {
    expect(substitute(batchOfOne, ['c0'], ['c4711'], [])).to.deep.equal([batchOfOne.values[0], '{"c4711"}', '{"100"}']);
    expect(substitute(batchOfOne, ['c0'], ['we"ird'], [])[1]).to.equal('{"we\\"ird"}');
    expect(unmatchedVarying([batchOfOne], ['c0'])).to.deep.equal([]);
    expect(unmatchedVarying([batchOfOne], ['c9'])).to.deep.equal(['c9']);
  });

  it('writes the array parameter as an ARRAY of the pgbench expression', () => {
    const out = toPgbenchScript([batchOfOne], ['c0'], { set: ['\\set n random(0, 9)'], expressions: [`('c' || :n::text)`] });
    expect(out).to.have.property('script');
    const { script, defines } = out as { script: string; defines: Record<string, string> };
    expect(script).to.equal(`\\set n random(0, 9)\nSELECT * FROM f(:p0_1::uuid[], ARRAY[('c' || :n::text)]::text[], :p0_3::bigint[]);\n`);
    expect(defines).to.deep.equal({ p0_1: batchOfOne.values[0], p0_3: '{"100"}' });
  });
});
