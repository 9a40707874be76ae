import { expect } from 'chai';
import { markGenerated, singleElementOf, substitute, toPgbenchScript, unmatchedVarying, type RecordedStatement } from '../../bench/sql-recorder';

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

  it('gives ids the server made inside a JSON parameter fresh values, keeping the ids both recordings share', () => {
    const tenant = '0b6f1f3e-8a2c-4d5e-9f10-1a2b3c4d5e6f';
    const json = (id: string, eventId: string) => `[{"tenant_id":"${tenant}","id":"${id}","event_id":"${eventId}","customer_id":"c0"}]`;
    const made = ['01a24493-0f41-7b89-83b1-2543a85bef26', '6c1d2e3f-4a5b-4c6d-8e7f-809a1b2c3d4e'];
    const recorded = (values: string[]): RecordedStatement => ({ index: 0, name: 'apply', text: 'SELECT * FROM f($1::uuid, $2::jsonb)', values });
    const first = recorded([tenant, json(made[0]!, made[1]!)]);
    const second = recorded([tenant, json('01a24493-0f42-7000-8000-000000000001', '7d2e3f40-5b6c-4d7e-9f80-91ab2c3d4e5f')]);
    expect(markGenerated([first], [second])).to.equal(true);
    expect(first.generated).to.deep.equal([1]);
    expect(first.embeddedIds).to.deep.equal({ 1: made });

    const replayed = substitute(first, [], [], [])[1] as string;
    const parsed = JSON.parse(replayed) as Array<Record<string, string>>;
    expect(parsed[0]!.tenant_id, 'an id both recordings share is kept').to.equal(tenant);
    expect(made, 'fresh ids').to.not.include(parsed[0]!.id);
    expect(made).to.not.include(parsed[0]!.event_id);
    expect(parsed[0]!.id).to.not.equal(parsed[0]!.event_id);
    expect(substitute(first, [], [], [])[1], 'fresh at every call').to.not.equal(replayed);

    const out = toPgbenchScript([first], [], { set: [], expressions: [] });
    const { script, defines } = out as { script: string; defines: Record<string, string> };
    expect(script).to.equal(
      `SELECT * FROM f(:p0_1::uuid, replace(replace(:p0_2, '${made[0]}', gen_random_uuid()::text), '${made[1]}', gen_random_uuid()::text)::jsonb);\n`,
    );
    expect(defines).to.deep.equal({ p0_1: tenant, p0_2: first.values[1] });
  });

  it('writes the array parameter as an ARRAY of the pgbench expression', () => {
    const out = toPgbenchScript([batchOfOne], ['c0'], { set: ['\\set n random(0, 9)'], expressions: [`('c' || :n::text)`] });
    expect(out).to.have.property('script');
    const { script, defines } = out as { script: string; defines: Record<string, string> };
    expect(script).to.equal(`\\set n random(0, 9)\nSELECT * FROM f(:p0_1::uuid[], ARRAY[('c' || :n::text)]::text[], :p0_3::bigint[]);\n`);
    expect(defines).to.deep.equal({ p0_1: batchOfOne.values[0], p0_3: '{"100"}' });
  });
});
