import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { createCreditsClient, CreditType, DEFAULT_DEADLINE_MS, PromotionalCreditType, type PromotionalCredit } from '../../client/src';
import { isReadMethod, requestCodecOf, SERVICE_DEFINITIONS } from '../../client/src/services';
import { useCreditsClient } from './fixtures';
import { startRecordingProxy, type RecordingProxy } from './recording-proxy';

const REPO = path.join(__dirname, '..', '..', '..');

describe('credits client calls', () => {
  const t = useCreditsClient();

  it('takes partial requests and answers decoded responses with bigint money and Date times', async () => {
    const added = await t.client.promotionalCredits.addPromotionalCredits({ customerId: 'cust-1', amountDecimal: '10.50', description: 'welcome', creditType: CreditType.CREDIT_TYPE_LOYALTY_CREDITS });
    const entry = added.promotionalCredit!;
    expect([entry.amount, entry.currencyCode, entry.type, entry.doneBy]).to.deep.equal([1050n, 'USD', PromotionalCreditType.PROMOTIONAL_CREDIT_TYPE_INCREMENT, 'rw-key']);
    expect(entry.createTime).to.be.instanceOf(Date);
    const big = await t.client.promotionalCredits.addPromotionalCredits({ customerId: 'big', amount: 9007199254740993n, description: 'big' });
    expect(big.promotionalCredit!.amount).to.equal(9007199254740993n);
    const got = await t.client.promotionalCredits.getPromotionalCredit({ id: entry.id });
    expect(got.promotionalCredit!.amountDecimal).to.equal('10.50');
  });

  it('walks every page of a List RPC with listPromotionalCreditsAll, newest first', async () => {
    for (let i = 1; i <= 23; i++) await t.client.promotionalCredits.addPromotionalCredits({ customerId: 'walker', amount: BigInt(i), description: `entry ${i}` });
    await t.client.promotionalCredits.addPromotionalCredits({ customerId: 'someone-else', amount: 1n, description: 'not mine' });

    const seen: PromotionalCredit[] = [];
    for await (const credit of t.client.promotionalCredits.listPromotionalCreditsAll({ customerId: { is: 'walker' }, pageSize: 5 })) seen.push(credit);
    expect(seen.map((c) => c.amount)).to.deep.equal(Array.from({ length: 23 }, (_, i) => BigInt(23 - i)));
    expect(new Set(seen.map((c) => c.id)).size).to.equal(23);

    const first = await t.client.promotionalCredits.listPromotionalCreditsAll({ customerId: { is: 'walker' }, pageSize: 5 }).next();
    expect(first.value?.amount).to.equal(23n);

    let everything = 0;
    for await (const _ of t.client.promotionalCredits.listPromotionalCreditsAll()) everything++;
    expect(everything).to.equal(24);
  });

  describe('metadata on the wire', () => {
    let proxy: RecordingProxy;
    beforeEach(async () => {
      proxy = await startRecordingProxy(t.server.address);
    });
    afterEach(() => proxy.close());

    it('sends the API key on every call, a fresh idempotency key on each mutating call only, and the default deadline', async () => {
      const viaProxy = createCreditsClient({ address: proxy.address, apiKey: t.tenant.rwKey, defaultDeadlineMs: 4_000 });
      try {
        // Each deadline is the call's start plus its allowance: bound it by the clock read around the call.
        const started = Date.now();
        await viaProxy.promotionalCredits.addPromotionalCredits({ customerId: 'm', amount: 10n, description: 'a' });
        const firstDone = Date.now();
        await viaProxy.promotionalCredits.deductPromotionalCredits({ customerId: 'm', amount: 1n, description: 'b' });
        const setStarted = Date.now();
        await viaProxy.promotionalCredits.setPromotionalCredits({ customerId: 'm', amount: 3n, description: 'c' }, { idempotencyKey: 'set-m-to-3', deadlineMs: 60_000 });
        const setDone = Date.now();
        await viaProxy.promotionalCredits.getCustomerBalance({ customerId: 'm' });
        await viaProxy.promotionalCredits.listPromotionalCredits({});

        const calls = proxy.calls;
        expect(calls.map((c) => c.path.split('/')[2])).to.deep.equal([
          'AddPromotionalCredits',
          'DeductPromotionalCredits',
          'SetPromotionalCredits',
          'GetCustomerBalance',
          'ListPromotionalCredits',
        ]);
        for (const call of calls) expect(call.metadata.authorization).to.equal(`Bearer ${t.tenant.rwKey}`);
        const keys = calls.map((c) => c.metadata['idempotency-key']);
        expect(keys[0]).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        expect(keys[1]).to.match(/^[0-9a-f-]{36}$/).and.not.equal(keys[0]);
        expect(keys.slice(2)).to.deep.equal(['set-m-to-3', undefined, undefined]);
        // The deadline travels as a relative timeout in whole milliseconds or coarser units: allow a second of rounding.
        expect(calls[0]!.deadline).to.be.within(started + 3_000, firstDone + 4_000);
        expect(calls[2]!.deadline).to.be.within(setStarted + 59_000, setDone + 60_000);
      } finally {
        viaProxy.close();
      }
    });
  });

  it('rejects bad options before calling', async () => {
    expect(() => createCreditsClient({ address: '', apiKey: 'k' })).to.throw(TypeError, /address/);
    expect(() => createCreditsClient({ address: 'localhost:1', apiKey: '' })).to.throw(TypeError, /apiKey/);
    expect(() => createCreditsClient({ address: 'localhost:1', apiKey: 'k', defaultDeadlineMs: 0 })).to.throw(TypeError, /defaultDeadlineMs/);
    expect(() => createCreditsClient({ address: 'localhost:1', apiKey: 'k', retry: { maxAttempts: 0 } })).to.throw(TypeError, /maxAttempts/);
    const err = await t.client.promotionalCredits.addPromotionalCredits({ customerId: 'x', amount: 1n, description: 'x' }, { idempotencyKey: 'ü' }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(TypeError);
    // HTTP/2 drops a header value with a space at either end: the call would run unkeyed, and each retry write again.
    for (const idempotencyKey of [' order-7', 'order-7 ']) {
      const spaced = await t.client.promotionalCredits.addPromotionalCredits({ customerId: 'x', amount: 1n, description: 'x' }, { idempotencyKey }).catch((e: unknown) => e);
      expect(spaced, JSON.stringify(idempotencyKey)).to.be.instanceOf(TypeError).with.property('message').that.includes('no space at either end');
    }
    // An amount protobuf cannot carry is the caller's mistake, not the service's INTERNAL.
    const tooBig = await t.client.promotionalCredits.addPromotionalCredits({ customerId: 'x', amount: 2n ** 63n, description: 'x' }).catch((e: unknown) => e);
    expect(tooBig).to.be.instanceOf(TypeError);
    expect((tooBig as Error).message).to.match(/^The request of \/credits\.v1\.PromotionalCreditService\/AddPromotionalCredits cannot be encoded: /);
    // A key the codec would drop without a word (an own __proto__, as JSON.parse makes it).
    const metadata = JSON.parse('{"order": "o-1", "__proto__": "x"}') as Record<string, string>;
    const reserved = await t.client.promotionalCredits.addPromotionalCredits({ customerId: 'x', amount: 1n, description: 'x', metadata }).catch((e: unknown) => e);
    expect(reserved).to.be.instanceOf(TypeError);
    expect((reserved as Error).message).to.include('"__proto__" at metadata');
  });

  it('has a request codec for every method of every service, and classifies reads', () => {
    for (const definition of Object.values(SERVICE_DEFINITIONS)) {
      for (const name of Object.keys(definition)) expect(typeof requestCodecOf(name).fromPartial, name).to.equal('function');
    }
    expect(Object.keys(SERVICE_DEFINITIONS.promotionalCredits).filter((name) => !isReadMethod(name))).to.deep.equal([
      'addPromotionalCredits',
      'deductPromotionalCredits',
      'setPromotionalCredits',
      'reversePromotionalCredit',
      'holdPromotionalCredits',
      'capturePromotionalCreditHold',
      'releasePromotionalCreditHold',
    ]);
    expect(DEFAULT_DEADLINE_MS).to.equal(10_000);
    // Compile-time checks of the method types (never called).
    void (() => {
      // @ts-expect-error reads take no idempotency key
      void t.client.promotionalCredits.getCustomerBalance({ customerId: 'x' }, { idempotencyKey: 'k' });
      // @ts-expect-error money is a bigint, never a number
      void t.client.promotionalCredits.addPromotionalCredits({ customerId: 'x', amount: 5 });
      // @ts-expect-error the iterator owns the page token
      void t.client.promotionalCredits.listPromotionalCreditsAll({ pageToken: 'abc' });
    });
  });

  it('is versioned with the service and depends on the runtime libraries the service uses', () => {
    const root = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'client', 'package.json'), 'utf8'));
    expect(pkg.name).to.equal('@credits/client');
    expect(pkg.version).to.equal(root.version);
    expect(pkg.dependencies).to.deep.equal({ '@bufbuild/protobuf': root.dependencies['@bufbuild/protobuf'], '@grpc/grpc-js': root.dependencies['@grpc/grpc-js'] });
  });
});
