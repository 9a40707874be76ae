import { Client, credentials, Metadata, type StatusObject } from '@grpc/grpc-js';
import { expect } from 'chai';
import pino from 'pino';
import { createCreditsClient, status, type CreditsClient } from '../../client/src';
import { GetCustomerBalanceRequest } from '../../gen/credits/v1/promotional_credit_service';
import { eventually } from '../support/eventually';
import { newTenant, type TestTenant } from '../support/tenant';
import { rejection, useOwnServer } from './fixtures';
import { startRecordingProxy, type RecordingProxy } from './recording-proxy';

const ADD = '/credits.v1.PromotionalCreditService/AddPromotionalCredits';
const DEDUCT = '/credits.v1.PromotionalCreditService/DeductPromotionalCredits';
const GET_BALANCE = '/credits.v1.PromotionalCreditService/GetCustomerBalance';
const STREAM_EVENTS = '/credits.v1.EventService/StreamEvents';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The service's log line of a call, as its logger wrote it. */
interface CallLine {
  msg: string;
  method: string;
  code: string;
  reason?: string;
  request_id: string;
}

describe('request ids: one per call, from the client to the service log and back', () => {
  const lines: CallLine[] = [];
  // A server of its own: its log lines are read here, and a test restarts it.
  const own = useOwnServer(pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as CallLine) }));
  let tenant: TestTenant;
  let proxy: RecordingProxy;
  const clients: CreditsClient[] = [];

  beforeEach(async () => {
    tenant = await newTenant(own.dataSource);
    proxy = await startRecordingProxy(own.address);
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await proxy.close();
  });

  function client(target: string): CreditsClient {
    const made = createCreditsClient({ address: target, apiKey: tenant.rwKey, retry: { initialBackoffMs: 10, maxBackoffMs: 50 } });
    clients.push(made);
    return made;
  }

  /** The service's log lines of `method` with request id `requestId`, once there are `count` (a line is written as its call ends). */
  const loggedWith = (method: string, requestId: string, count = 1) =>
    eventually(
      5_000,
      async () => lines.filter((l) => l.msg === 'call' && l.method === method && l.request_id === requestId),
      (found) => found.length >= count,
    );

  it('sends one x-request-id on every attempt of a call and a new one for the next call, which the service logs', async () => {
    const credits = client(proxy.address).promotionalCredits;
    proxy.failNext(2, status.UNAVAILABLE);
    await credits.addPromotionalCredits({ customerId: 'retried', amount: 5n, description: 'retried twice' });
    await credits.getCustomerBalance({ customerId: 'retried' });

    const adds = proxy.calls.filter((c) => c.path === ADD);
    expect(adds.map((a) => status[a.code])).to.deep.equal(['UNAVAILABLE', 'UNAVAILABLE', 'OK']);
    const ids = new Set(adds.map((a) => a.metadata['x-request-id']));
    expect(ids.size, 'one request id for every attempt').to.equal(1);
    const [addId] = [...ids];
    expect(addId).to.match(UUID);
    const [read] = proxy.calls.filter((c) => c.path === GET_BALANCE);
    expect(read!.metadata['x-request-id'], 'a read has its own').to.match(UUID).and.not.equal(addId);

    expect((await loggedWith(ADD, addId!)).map((l) => l.code), 'the attempt that reached the service').to.deep.equal(['OK']);
    expect((await loggedWith(GET_BALANCE, read!.metadata['x-request-id']!)).map((l) => l.code)).to.deep.equal(['OK']);
  });

  it("answers a failed call's request id in its CreditsError: the caller's own, or the one the client made", async () => {
    const credits = client(own.address).promotionalCredits;
    const given = await rejection(credits.deductPromotionalCredits({ customerId: 'poor', amount: 1n, description: 'too much' }, { requestId: 'checkout-991/try-1' }));
    expect([given.reason, given.requestId]).to.deep.equal(['INSUFFICIENT_BALANCE', 'checkout-991/try-1']);
    expect((await loggedWith(DEDUCT, 'checkout-991/try-1')).map((l) => [l.code, l.reason])).to.deep.equal([['FAILED_PRECONDITION', 'INSUFFICIENT_BALANCE']]);

    const made = await rejection(credits.deductPromotionalCredits({ customerId: 'poor', amount: 1n, description: 'too much' }));
    expect(made.requestId).to.match(UUID);
    expect(made.grpcMetadata?.get('x-request-id'), 'as the service answered it').to.deep.equal([made.requestId]);
    expect(await loggedWith(DEDUCT, made.requestId!)).to.have.length(1);

    // Not sent (the proxy answers for the service): the one the client sent.
    proxy.failNext(1, status.NOT_FOUND);
    const unanswered = await rejection(client(proxy.address).promotionalCredits.getCustomerBalance({ customerId: 'poor' }, { requestId: 'mine' }));
    expect([unanswered.codeName, unanswered.requestId]).to.deep.equal(['NOT_FOUND', 'mine']);
  });

  it('refuses a request id the service would not take, before anything is sent', async () => {
    const credits = client(proxy.address).promotionalCredits;
    for (const requestId of ['', 'with space', 'x'.repeat(101), 'café']) {
      const err = await credits.getCustomerBalance({ customerId: 'c' }, { requestId }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, JSON.stringify(requestId)).to.be.instanceOf(TypeError);
      expect((err as TypeError).message).to.match(/requestId must be 1\.\.100 printable ASCII characters/);
    }
    expect(proxy.calls).to.deep.equal([]);
    await credits.getCustomerBalance({ customerId: 'c' }, { requestId: 'x'.repeat(100) });
    expect(proxy.calls.map((c) => c.metadata['x-request-id'])).to.deep.equal(['x'.repeat(100)]);
  });

  it('sends one x-request-id on every connection of an event stream, which its errors carry', async () => {
    const events = client(own.address).events;
    const connects: string[] = [];
    const reconnects: Array<string | undefined> = [];
    const stop = new AbortController();
    const iteration = (async () => {
      for await (const _ of events.stream({ liveOnly: true }, { signal: stop.signal, onConnect: ({ afterCursor }) => connects.push(afterCursor), onReconnect: ({ error }) => reconnects.push(error.requestId) })) {
        // no events are written: the stream only connects, is dropped and connects again
      }
    })().then(
      () => undefined,
      (err: unknown) => err,
    );
    await eventually(5_000, async () => connects.length, (n) => n >= 1);
    // A restart ends the stream with UNAVAILABLE SHUTTING_DOWN: the client reconnects.
    await own.restart();
    await eventually(10_000, async () => connects.length, (n) => n >= 2);
    stop.abort();
    const end = (await iteration) as { codeName?: string; requestId?: string };
    expect(end.codeName).to.equal('CANCELLED');
    expect(end.requestId).to.match(UUID);
    expect(reconnects.length, 'reconnected').to.be.at.least(1);
    expect(new Set(reconnects), 'the errors it reconnected after').to.deep.equal(new Set([end.requestId]));
    const connections = await loggedWith(STREAM_EVENTS, end.requestId!, 2);
    expect(connections.map((l) => l.code), "each connection's log line").to.include('UNAVAILABLE');
  });

  it('answers the x-request-id trailer to a caller that sent none, the id its log line has', async () => {
    const raw = new Client(own.address, credentials.createInsecure());
    try {
      const trailerOf = (metadata: Metadata) =>
        new Promise<StatusObject>((resolve) => {
          const call = raw.makeUnaryRequest(
            GET_BALANCE,
            (r: GetCustomerBalanceRequest) => Buffer.from(GetCustomerBalanceRequest.encode(r).finish()),
            (b: Buffer) => b,
            GetCustomerBalanceRequest.fromPartial({ customerId: 'raw' }),
            metadata,
            () => undefined,
          );
          call.on('status', resolve);
        });
      const keyed = new Metadata();
      keyed.set('authorization', `Bearer ${tenant.rwKey}`);
      const answered = await trailerOf(keyed);
      const [generated] = answered.metadata.get('x-request-id');
      expect(answered.code).to.equal(status.OK);
      expect(generated).to.match(UUID);
      expect(await loggedWith(GET_BALANCE, generated as string)).to.have.length(1);

      // Refused before authentication passed: the trailer still names the call.
      const refused = await trailerOf(new Metadata());
      const [refusedId] = refused.metadata.get('x-request-id');
      expect(refused.code).to.equal(status.UNAUTHENTICATED);
      expect(refusedId).to.match(UUID).and.not.equal(generated);
      expect((await loggedWith(GET_BALANCE, refusedId as string)).map((l) => l.code)).to.deep.equal(['UNAUTHENTICATED']);
    } finally {
      raw.close();
    }
  });
});
