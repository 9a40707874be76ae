import { context, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AlwaysOnSampler, InMemorySpanExporter, ParentBasedSampler, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { expect } from 'chai';
import { GroupCommit, type GroupWork, type MemberResult } from '../../src/db/group-commit';

/** A group work that records its groups and answers each member doubled; `fail` decides whether a group throws. */
function recording(fail: (members: number[]) => unknown = () => undefined, onGroupFailure: GroupWork<number, number>['onGroupFailure'] = 'split') {
  const groups: number[][] = [];
  let running = 0;
  let maxRunning = 0;
  const work: GroupWork<number, number> = {
    runGroup: async (members) => {
      groups.push(members);
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      const err = fail(members);
      if (err) throw err;
      return members.map((m): MemberResult<number> => (m < 0 ? { ok: false, error: new Error(`member ${m} refused`) } : { ok: true, value: m * 2 }));
    },
    onGroupFailure,
  };
  return { work, groups, maxRunning: () => maxRunning };
}

describe('GroupCommit (unit)', () => {
  it('puts the members of one turn in one group, each answered its own result', async () => {
    const { work, groups } = recording();
    const commit = new GroupCommit(work, { maxGroups: 1, maxGroupSize: 10 });
    const results = await Promise.allSettled([1, 2, -3, 4].map((m) => commit.submit(m)));
    expect(groups).to.deep.equal([[1, 2, -3, 4]]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).to.deep.equal([2, 4, 'member -3 refused', 8]);
  });

  it('runs at most maxGroups groups at once; members arriving meanwhile form the next groups, at most maxGroupSize each', async () => {
    const { work, groups, maxRunning } = recording();
    const commit = new GroupCommit(work, { maxGroups: 2, maxGroupSize: 3 });
    const members = Array.from({ length: 10 }, (_, i) => i);
    expect(await Promise.all(members.map((m) => commit.submit(m)))).to.deep.equal(members.map((m) => m * 2));
    expect(maxRunning()).to.equal(2);
    expect(groups.map((g) => g.length)).to.deep.equal([3, 3, 3, 1]);
    expect(groups.flat()).to.deep.equal(members);
  });

  it("'split': a failed group's members run again as groups of their own, so only the bad one fails", async () => {
    const { work, groups } = recording((members) => (members.includes(13) ? new Error('statement failed') : undefined));
    const commit = new GroupCommit(work, { maxGroups: 1 });
    const results = await Promise.allSettled([12, 13, 14].map((m) => commit.submit(m)));
    expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
    expect(groups).to.deep.equal([[12, 13, 14], [12], [13], [14]]);
  });

  it("a function: a failed group's members each run that way; 'share-error': they all get the group's error", async () => {
    let running = 0;
    let maxRunning = 0;
    const alone = recording(
      () => new Error('group failed'),
      async (m) => {
        // A member run alone may hold a pooled connection and read through the pool: never all at once.
        maxRunning = Math.max(maxRunning, ++running);
        await new Promise((resolve) => setTimeout(resolve, 5));
        running--;
        if (m === 2) throw new Error('member 2 failed alone');
        return m * 100;
      },
    );
    const aloneCommit = new GroupCommit(alone.work);
    const aloneResults = await Promise.allSettled([1, 2, 3].map((m) => aloneCommit.submit(m)));
    expect(aloneResults.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).to.deep.equal([100, 'member 2 failed alone', 300]);
    expect(alone.groups).to.deep.equal([[1, 2, 3]]);
    expect(maxRunning).to.equal(1);
    const shared = recording(() => new Error('group failed'), 'share-error');
    const commit = new GroupCommit(shared.work);
    const results = await Promise.allSettled([1, 2].map((m) => commit.submit(m)));
    expect(results.map((r) => (r as PromiseRejectedResult).reason.message)).to.deep.equal(['group failed', 'group failed']);
    expect(shared.groups).to.deep.equal([[1, 2]]);
  });

  it('does not take a group apart when the database is unreachable: every member gets that error at once', async () => {
    const unreachable = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const { work, groups } = recording(() => unreachable, 'split');
    const commit = new GroupCommit(work);
    const results = await Promise.allSettled([1, 2, 3].map((m) => commit.submit(m)));
    expect(results.every((r) => r.status === 'rejected' && r.reason === unreachable)).to.equal(true);
    expect(groups).to.deep.equal([[1, 2, 3]]);
  });
});

describe('GroupCommit tracing (unit)', () => {
  const exporter = new InMemorySpanExporter();
  before(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(
      new TracerProvider({ sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }), spanProcessors: [new SimpleSpanProcessor({ exporter })] }),
    );
  });
  after(() => {
    trace.disable();
    context.disable();
  });

  it('runs a group under its first sampled member, when the first member is not sampled', async () => {
    // Two calls' server spans, children of their callers' traceparent: the first unsampled, the second sampled.
    const tracer = trace.getTracer('test');
    const caller = (id: string, traceFlags: number) =>
      trace.setSpanContext(ROOT_CONTEXT, { traceId: id.repeat(32), spanId: id.repeat(16), traceFlags, isRemote: true });
    const unsampled = tracer.startSpan('call a', {}, caller('a', TraceFlags.NONE));
    const sampled = tracer.startSpan('call b', {}, caller('b', TraceFlags.SAMPLED));
    expect([unsampled.isRecording(), sampled.isRecording()]).to.deep.equal([false, true]);
    const { work, groups } = recording();
    const commit = new GroupCommit(work, { maxGroups: 1, maxGroupSize: 10, name: 'keyed_calls' });
    await Promise.all([
      context.with(trace.setSpan(ROOT_CONTEXT, unsampled), () => commit.submit(1)),
      context.with(trace.setSpan(ROOT_CONTEXT, sampled), () => commit.submit(2)),
    ]);
    expect(groups).to.deep.equal([[1, 2]]);
    const group = exporter.getFinishedSpans().find((s) => s.name === 'group commit keyed_calls');
    expect(group, 'the group span was recorded').to.not.equal(undefined);
    expect(group!.spanContext().traceId).to.equal('b'.repeat(32));
    expect(group!.parentSpanContext?.spanId).to.equal(sampled.spanContext().spanId);
  });
});
