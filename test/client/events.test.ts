import { expect } from 'chai';
import { createCreditsClient, CreditsError, EventType, status, type CreditsClient, type Event } from '../../client/src';
import { freePort, spawnServer, type ChildServer } from '../support/child-server';
import { testDatabaseUrl } from '../support/database';
import { storedEventIds } from '../support/events';
import { eventually } from '../support/eventually';
import { startSilentProxy } from '../support/silent-proxy';
import { useTenantClients } from '../support/tenant-clients';
import { rejection } from './fixtures';

const base = { currencyCode: 'USD', description: 'client events' };
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Iterates `events` into `seen` in the background until it ends; answers how it ended. */
function consume(events: AsyncGenerator<Event>, seen: Event[]): Promise<unknown> {
  return (async () => {
    for await (const event of events) seen.push(event);
  })().then(
    () => undefined,
    (err: unknown) => err,
  );
}

async function until(done: () => boolean, ms: number, what: string | (() => string)): Promise<void> {
  for (const end = Date.now() + ms; !done(); await delay(20)) {
    if (Date.now() > end) throw new Error(`${typeof what === 'string' ? what : what()}: not done in ${ms} ms`);
  }
}

describe('credits client events', function () {
  this.timeout(180_000);
  const t = useTenantClients();
  const clients: CreditsClient[] = [];
  const client = (address: string, apiKey = t.tenant.readKey, keepaliveMs?: number) => {
    const made = createCreditsClient({ address, apiKey, retry: { initialBackoffMs: 50, maxBackoffMs: 500 }, keepaliveMs });
    clients.push(made);
    return made;
  };
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  it('follows the events across a killed and a drained server, under write load, seeing each committed event once and in order', async () => {
    const url = await testDatabaseUrl();
    const port = await freePort();
    let server: ChildServer = await spawnServer(url, port);
    const reconnects: string[] = [];
    const seen: Event[] = [];
    const abort = new AbortController();
    const events = client(server.address).events;
    const ended = consume(
      events.stream({}, { signal: abort.signal, onReconnect: ({ error }) => reconnects.push(`${error.codeName} ${error.reason ?? ''}`.trim()) }),
      seen,
    );
    // A live reader that has received nothing yet when the server dies resumes from where its stream started.
    const late: Event[] = [];
    const lateStarts: string[] = [];
    const lateEnded = consume(
      events.stream({ liveOnly: true, customerId: 'late' }, { signal: abort.signal, onConnect: ({ afterCursor }) => lateStarts.push(afterCursor) }),
      late,
    );
    // Writers on the other (in-process) server keep committing while this one dies and comes back.
    let writing = true;
    let written = 0;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; writing; i++) {
        await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: `w${w}-${i % 5}`, amount: 1n });
        written++;
      }
    });
    try {
      await until(() => seen.length >= 20 && lateStarts.length === 1, 30_000, 'events before the kill, and the live reader started');
      expect(lateStarts[0], 'a live stream says where it started').to.not.equal('');
      server.process.kill('SIGKILL');
      await server.exited;
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'late', amount: 1n });
      await delay(300);
      server = await spawnServer(url, port);
      await until(() => reconnects.length >= 1 && seen.length >= written - 10 && written > 60, 60_000, 'events after the restart');
      server.process.kill('SIGTERM'); // a drain: the stream ends with UNAVAILABLE (SHUTTING_DOWN)
      await server.exited;
      server = await spawnServer(url, port);
      await until(() => reconnects.length >= 2, 60_000, 'the second reconnection');
      await delay(300);
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    const stored = await storedEventIds(t.server.dataSource, t.tenant.id);
    try {
      // A hang guard. (The live reader may miss the short-lived second server
      // altogether: its reconnections back off like any client's.)
      const caughtUp = () => `every committed event (${seen.length} of ${stored.length}; the live reader's: ${late.length})`;
      await until(() => seen.length >= stored.length && late.length >= 1, 30_000, caughtUp);
      await delay(200);
      expect(seen.length, 'no event twice').to.equal(stored.length);
      expect(seen.map((e) => e.id), 'every committed event, in order').to.deep.equal(stored);
      expect(reconnects.some((r) => r.startsWith('UNAVAILABLE')), reconnects.join(', ')).to.equal(true);
      expect(reconnects, 'the drained server said why').to.include('UNAVAILABLE SHUTTING_DOWN');
      expect(late.map((e) => e.customerId), 'the live reader missed nothing while the server was down').to.deep.equal(['late']);
      // It reconnected from where it started until it had its event, and after it from there.
      const resumedFrom = lateStarts.slice(1).map((start) => (start === lateStarts[0] ? 'start' : start === late[0]!.cursor ? 'event' : start));
      expect(resumedFrom, 'where the live reader resumed').to.include('start');
      expect(resumedFrom.join(' '), 'where the live reader resumed').to.match(/^(start )*start( event)*$/);
      console.log(`      client stream: ${stored.length} events across a kill and a drain; reconnections: ${reconnects.join(', ')}`);
    } finally {
      abort.abort();
      await lateEnded;
      const end = await ended;
      expect(end).to.be.instanceOf(CreditsError);
      expect((end as CreditsError).code).to.equal(status.CANCELLED);
      server.process.kill('SIGTERM');
      expect(await server.exited, server.output()).to.deep.equal({ code: 0, signal: null });
    }
  });

  it('ends streams and later calls of a closed client with CANCELLED, ends the loop with what onConnect throws, and reconnects a dropped stream maxReconnectAttempts times', async () => {
    // close(): an open stream and a later call end with a CreditsError CANCELLED.
    const closing = client(t.server.address);
    const waiting = consume(closing.events.stream({ liveOnly: true }), []);
    await delay(300);
    closing.close();
    const closedStream = await waiting;
    expect(closedStream, 'the stream of a closed client').to.be.instanceOf(CreditsError);
    expect((closedStream as CreditsError).code).to.equal(status.CANCELLED);
    const later = await rejection(closing.promotionalCredits.getCustomerBalance({ customerId: 'x' }));
    expect(later).to.be.instanceOf(CreditsError);
    expect((later as CreditsError).code).to.equal(status.CANCELLED);

    // onConnect throws: the loop ends with its error (it was uncaught, in grpc-js's handler).
    const thrown = await consume(
      client(t.server.address).events.stream({ liveOnly: true }, {
        onConnect: () => {
          throw new Error('boom');
        },
      }),
      [],
    );
    expect((thrown as Error).message).to.equal('boom');

    // maxReconnectAttempts 1: a stream the server answered and then dropped is reconnected once.
    const url = await testDatabaseUrl();
    const port = await freePort();
    let server: ChildServer = await spawnServer(url, port);
    const reconnects: number[] = [];
    const connects: string[] = [];
    // Its one reconnection waits 5-10 s (the retry backoff): the server is back by then.
    const patient = createCreditsClient({
      address: server.address,
      apiKey: t.tenant.readKey,
      retry: { initialBackoffMs: 10_000, maxBackoffMs: 10_000 },
      channelOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 200 },
    });
    clients.push(patient);
    const once = consume(
      patient.events.stream(
        { liveOnly: true },
        { maxReconnectAttempts: 1, onReconnect: ({ attempt }) => reconnects.push(attempt), onConnect: ({ afterCursor }) => connects.push(afterCursor) },
      ),
      [],
    );
    try {
      await until(() => connects.length === 1, 10_000, 'the first connection');
      server.process.kill('SIGKILL');
      await server.exited;
      server = await spawnServer(url, port);
      await until(() => connects.length === 2, 30_000, () => `the reconnection (reconnects: ${reconnects.join(', ')})`);
      // Down for good: one attempt that fails, then the iterator gives up.
      server.process.kill('SIGKILL');
      await server.exited;
      const end = await once;
      expect(end, 'gives up once an attempt fails').to.be.instanceOf(CreditsError);
      expect((end as CreditsError).code).to.equal(status.UNAVAILABLE);
    } finally {
      server.process.kill('SIGKILL');
      await server.exited;
    }
  });

  it('lists events, filters a stream, resumes a live stream from where it started, and throws what a retry cannot fix', async () => {
    const events = client(t.server.address).events;
    await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'old', amount: 5n });
    // Listed once every transaction of the cluster that took an xid before it has ended (the horizon, README "Events").
    const page = await eventually(5_000, () => events.listEvents({ pageSize: 10 }), (p) => p.events.length > 0);
    expect(page.events.map((e) => e.customerId)).to.deep.equal(['old']);
    expect(page.nextCursor).to.equal(page.events[0]!.cursor);

    const live: Event[] = [];
    const depleted: Event[] = [];
    const abort = new AbortController();
    const endings = [
      consume(events.stream({ liveOnly: true }, { signal: abort.signal }), live),
      consume(events.stream({ types: [EventType.EVENT_TYPE_BALANCE_DEPLETED] }, { signal: abort.signal }), depleted),
    ];
    await delay(300); // both streams are open
    await t.promotionalCredits.deductPromotionalCredits({ ...base, customerId: 'old' });
    await until(() => live.length >= 2 && depleted.length >= 1, 1_000, 'delivery within 1 s');
    expect(live.map((e) => [EventType[e.type], e.customerId])).to.deep.equal([
      ['EVENT_TYPE_PROMOTIONAL_CREDIT_CREATED', 'old'],
      ['EVENT_TYPE_BALANCE_DEPLETED', 'old'],
    ]);
    expect(depleted.map((e) => e.id)).to.deep.equal([live[1]!.id]);
    abort.abort();
    await Promise.all(endings);

    const bad = await rejection(events.stream({ afterCursor: 'junk' }).next());
    expect([bad.codeName, bad.reason, bad.fieldViolations.map((v) => v.field)]).to.deep.equal(['INVALID_ARGUMENT', 'VALIDATION_FAILED', ['after_cursor']]);
    const refused = await rejection(client(t.server.address, t.tenant.writeKey).events.stream().next());
    expect([refused.codeName, refused.reason]).to.deep.equal(['PERMISSION_DENIED', 'API_KEY_SCOPE_MISSING']);
  });

  it('gives up a connection that went silent (no FIN, no RST) and resumes the stream on a new one', async () => {
    const proxy = await startSilentProxy(t.server.address);
    try {
      const seen: Event[] = [];
      const reconnects: string[] = [];
      const abort = new AbortController();
      const ended = consume(
        client(proxy.address, t.tenant.readKey, 300).events.stream(
          { customerId: 'silent' },
          { signal: abort.signal, onReconnect: ({ error }) => reconnects.push(error.codeName) },
        ),
        seen,
      );
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'silent', amount: 1n });
      await until(() => seen.length === 1, 5_000, 'the first event');
      expect(proxy.silence()).to.equal(1);
      await t.promotionalCredits.addPromotionalCredits({ ...base, customerId: 'silent', amount: 2n });
      // Unanswered pings end the silent connection within ~0.5 s; the stream resumes after the first event.
      await until(() => seen.length === 2, 10_000, () => `the event written while silent (reconnects: ${reconnects.join(', ') || 'none'})`);
      expect(reconnects).to.deep.equal(['UNAVAILABLE']);
      expect(seen.map((e) => e.customerId)).to.deep.equal(['silent', 'silent']);
      expect(seen[1]!.id).to.not.equal(seen[0]!.id);
      abort.abort();
      await ended;
    } finally {
      await proxy.close();
    }
  });
});
