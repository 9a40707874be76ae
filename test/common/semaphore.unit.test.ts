import { expect } from 'chai';
import { Semaphore } from '../../src/common/semaphore';

/** A promise with its resolve handle, to hold a holder's work open. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('Semaphore', () => {
  it('never lets more weight run than it has permits, and runs every waiter in the end', async () => {
    const semaphore = new Semaphore(5);
    let running = 0;
    let peak = 0;
    const weights = [2, 3, 1, 5, 4, 2, 2, 1, 3, 5, 1, 1];
    const done = await Promise.all(
      weights.map((weight, i) =>
        semaphore.use(weight, async () => {
          running += weight;
          peak = Math.max(peak, running);
          await turn();
          running -= weight;
          return i;
        }),
      ),
    );
    expect(done).to.deep.equal(weights.map((_, i) => i));
    expect(peak).to.equal(5);
    expect(semaphore.available).to.equal(5);
  });

  it('serves waiters first come, first served: a light caller does not overtake a heavy one', async () => {
    const semaphore = new Semaphore(4);
    const order: string[] = [];
    const first = gate();
    const holder = semaphore.use(3, () => first.promise);
    const heavy = semaphore.use(4, async () => void order.push('heavy'));
    const light = semaphore.use(1, async () => void order.push('light'));
    await turn();
    // One permit is free, but the heavy caller came first.
    expect(order).to.deep.equal([]);
    first.open();
    await Promise.all([holder, heavy, light]);
    expect(order).to.deep.equal(['heavy', 'light']);
  });

  it('gives the permits back when the work throws', async () => {
    const semaphore = new Semaphore(2);
    const failed = await semaphore
      .use(2, async () => {
        throw new Error('boom');
      })
      .then(
        () => undefined,
        (err: Error) => err.message,
      );
    expect(failed).to.equal('boom');
    expect(semaphore.available).to.equal(2);
    expect(await semaphore.use(2, async () => 'ran')).to.equal('ran');
  });

  it('runs a caller heavier than all permits alone instead of never', async () => {
    const semaphore = new Semaphore(3);
    let sawAvailable = -1;
    await semaphore.use(10, async () => void (sawAvailable = semaphore.available));
    expect(sawAvailable).to.equal(0);
    expect(semaphore.available).to.equal(3);
  });

  it('refuses a permit count that is not a positive integer', () => {
    expect(() => new Semaphore(0)).to.throw(RangeError);
    expect(() => new Semaphore(1.5)).to.throw(RangeError);
  });
});
