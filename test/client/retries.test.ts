import { expect } from 'chai';
import { createCreditsClient, status, type CreditsClient } from '../../client/src';
import { createLogger } from '../../src/logger';
import { newTenant, type TestTenant } from '../support/tenant';
import { rejection, useOwnServer } from './fixtures';
import { startRecordingProxy, type RecordingProxy } from './recording-proxy';

const ADD = '/credits.v1.PromotionalCreditService/AddPromotionalCredits';
const GET_BALANCE = '/credits.v1.PromotionalCreditService/GetCustomerBalance';
const logger = createLogger('silent');
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('credits client retries', () => {
  // A server of its own: this suite stops and restarts it.
  const own = useOwnServer(logger);
  let tenant: TestTenant;
  const clients: CreditsClient[] = [];

  beforeEach(async () => {
    tenant = await newTenant(own.dataSource);
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });

  function client(target: string, retry?: Parameters<typeof createCreditsClient>[0]['retry']): CreditsClient {
    const made = createCreditsClient({ address: target, apiKey: tenant.rwKey, retry, defaultDeadlineMs: 15_000 });
    clients.push(made);
    return made;
  }

  async function balanceOf(customerId: string): Promise<bigint | undefined> {
    const res = await client(own.address).promotionalCredits.getCustomerBalance({ customerId });
    return res.balance?.balances[0]?.amount;
  }

  it('completes mutating and read calls made while the server restarts on the same port, applying each once', async () => {
    const credits = client(own.address, { maxAttempts: 20, initialBackoffMs: 100, maxBackoffMs: 400 }).promotionalCredits;
    await credits.addPromotionalCredits({ customerId: 'restart', amount: 1n, description: 'before the restart' });

    const restarted = own.restart(700);
    await delay(100); // the server is down now
    const added = credits.addPromotionalCredits({ customerId: 'restart', amount: 100n, description: 'during the restart' });
    const read = credits.getCustomerBalance({ customerId: 'restart' });
    await restarted;
    expect((await added).balance!.balances[0]!.amount).to.equal(101n);
    expect((await read).balance).to.not.equal(undefined);

    expect(await balanceOf('restart')).to.equal(101n);
    const page = await credits.listPromotionalCredits({ customerId: { is: 'restart' } });
    expect(page.promotionalCredits.map((e) => e.description)).to.deep.equal(['during the restart', 'before the restart']);
  });

  describe('through a recording proxy', () => {
    let proxy: RecordingProxy;
    beforeEach(async () => {
      proxy = await startRecordingProxy(own.address);
    });
    afterEach(() => proxy.close());

    const attemptsOf = (path: string) => proxy.calls.filter((c) => c.path === path);

    it('sends the same idempotency key on every attempt while the server behind is stopped and started again', async () => {
      const credits = client(proxy.address, { maxAttempts: 20, initialBackoffMs: 100, maxBackoffMs: 400 }).promotionalCredits;
      await credits.addPromotionalCredits({ customerId: 'proxied', amount: 5n, description: 'first' });

      const restarted = own.restart(700);
      await delay(100);
      const res = await credits.addPromotionalCredits({ customerId: 'proxied', amount: 7n, description: 'second' });
      await restarted;
      expect(res.balance!.balances[0]!.amount).to.equal(12n);

      const [first, ...second] = attemptsOf(ADD);
      expect(second.length, 'the second add was retried').to.be.greaterThan(1);
      expect(second.slice(0, -1).map((a) => status[a.code])).to.satisfy((codes: string[]) => codes.every((c) => c === 'UNAVAILABLE'));
      expect(status[second.at(-1)!.code]).to.equal('OK');
      const keys = new Set(second.map((a) => a.metadata['idempotency-key']));
      expect(keys.size, 'one key for every attempt of the call').to.equal(1);
      expect([...keys][0]).to.match(/^[0-9a-f-]{36}$/);
      expect(first!.metadata['idempotency-key']).to.not.equal([...keys][0]);
      for (const attempt of second) expect(attempt.metadata.authorization).to.equal(`Bearer ${tenant.rwKey}`);
      expect(await balanceOf('proxied')).to.equal(12n);
    });

    it('retries ABORTED for a mutating call with its own key, once applied', async () => {
      const credits = client(proxy.address, { initialBackoffMs: 10, maxBackoffMs: 50 }).promotionalCredits;
      proxy.failNext(2, status.ABORTED);
      await credits.addPromotionalCredits({ customerId: 'aborted', amount: 3n, description: 'conflict' }, { idempotencyKey: 'invoice-7-credit' });
      const attempts = attemptsOf(ADD);
      expect(attempts.map((a) => status[a.code])).to.deep.equal(['ABORTED', 'ABORTED', 'OK']);
      expect(attempts.map((a) => a.metadata['idempotency-key'])).to.deep.equal(['invoice-7-credit', 'invoice-7-credit', 'invoice-7-credit']);
      expect(await balanceOf('aborted')).to.equal(3n);
    });

    it('retries a read on UNAVAILABLE but not on ABORTED, and sends reads no idempotency key', async () => {
      const credits = client(proxy.address, { initialBackoffMs: 10, maxBackoffMs: 50 }).promotionalCredits;
      proxy.failNext(2, status.UNAVAILABLE);
      await credits.getCustomerBalance({ customerId: 'reader' });
      expect(attemptsOf(GET_BALANCE).map((a) => status[a.code])).to.deep.equal(['UNAVAILABLE', 'UNAVAILABLE', 'OK']);
      expect(attemptsOf(GET_BALANCE).every((a) => a.metadata['idempotency-key'] === undefined)).to.equal(true);

      proxy.failNext(1, status.ABORTED);
      const err = await rejection(credits.getCustomerBalance({ customerId: 'reader' }));
      expect(err.codeName).to.equal('ABORTED');
      expect(err.attempts).to.equal(1);
    });

    it('does not retry other errors', async () => {
      const credits = client(proxy.address, { initialBackoffMs: 10 }).promotionalCredits;
      const err = await rejection(credits.deductPromotionalCredits({ customerId: 'poor', amount: 1n, description: 'too much' }));
      expect(err.reason).to.equal('INSUFFICIENT_BALANCE');
      expect(attemptsOf('/credits.v1.PromotionalCreditService/DeductPromotionalCredits')).to.have.length(1);
    });

    it('gives up after maxAttempts, or before a backoff would pass the deadline', async () => {
      const credits = client(proxy.address, { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 20 }).promotionalCredits;
      proxy.failNext(100, status.UNAVAILABLE);
      const bounded = await rejection(credits.addPromotionalCredits({ customerId: 'down', amount: 1n, description: 'x' }));
      expect([bounded.codeName, bounded.attempts, attemptsOf(ADD).length]).to.deep.equal(['UNAVAILABLE', 3, 3]);
      expect(bounded.message).to.match(/scripted UNAVAILABLE/);

      const patient = client(proxy.address, { maxAttempts: 50, initialBackoffMs: 200, maxBackoffMs: 200 }).promotionalCredits;
      const started = Date.now();
      const err = await rejection(patient.addPromotionalCredits({ customerId: 'down', amount: 1n, description: 'x' }, { deadlineMs: 700 }));
      // Normally the last UNAVAILABLE (no retry is started that could not finish in time); on a
      // loaded machine the last attempt itself may run into the deadline.
      expect(err.codeName).to.be.oneOf(['UNAVAILABLE', 'DEADLINE_EXCEEDED']);
      expect(err.attempts).to.be.within(2, 7);
      expect(Date.now() - started, 'ends by the deadline').to.be.lessThan(1_000);
    });

    it('stops retrying at once when the signal aborts', async () => {
      const credits = client(proxy.address, { maxAttempts: 10, initialBackoffMs: 5_000, maxBackoffMs: 5_000 }).promotionalCredits;
      proxy.failNext(100, status.UNAVAILABLE);
      const controller = new AbortController();
      const started = Date.now();
      const call = credits.addPromotionalCredits({ customerId: 'cancel', amount: 1n, description: 'x' }, { signal: controller.signal });
      setTimeout(() => controller.abort(), 100);
      const err = await rejection(call);
      expect(err.codeName).to.equal('CANCELLED');
      expect(Date.now() - started).to.be.lessThan(2_000);
      expect(attemptsOf(ADD)).to.have.length(1);
    });
  });
});
