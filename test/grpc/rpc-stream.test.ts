import { expect } from 'chai';
import { credentials, makeGenericClientConstructor, Server, ServerCredentials, status, type ServerWritableStream } from '@grpc/grpc-js';
import { BATCH_WRITE_BYTES, directSender, writesBatchesAtOnce } from '../../src/grpc/rpc';

/** One server-streaming method of raw bytes: what StreamEvents sends (encoded events) without the rest of the service. */
const identity = (b: Buffer) => b;
const method = {
  path: '/test.Stream/Send',
  requestStream: false,
  responseStream: true,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
};
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A message of `size` bytes that says its number. */
function numbered(n: number, size: number): Buffer {
  const bytes = Buffer.alloc(size, 0x2e);
  bytes.writeUInt32BE(n, 0);
  return bytes;
}

describe('stream sends past grpc-js\'s Writable (directSender)', function () {
  this.timeout(30_000);
  let server: Server;
  let address: string;
  let handler: (call: ServerWritableStream<Buffer, Buffer>) => Promise<void>;
  const clients: Array<{ close(): void }> = [];
  const streams: Array<{ cancel(): void }> = [];

  before(async () => {
    server = new Server();
    // A handler that throws (a failed expectation) ends the call with INTERNAL and its message: the client's error says why.
    server.addService(
      { send: method },
      {
        send: (call: ServerWritableStream<Buffer, Buffer>) =>
          void handler(call).catch((err: Error) => call.emit('error', { code: status.INTERNAL, details: err.message })),
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    address = `127.0.0.1:${port}`;
  });
  after(() => server.forceShutdown());
  afterEach(() => {
    for (const s of streams.splice(0)) s.cancel(); // a test that failed midway leaves its stream open
    for (const c of clients.splice(0)) c.close();
  });

  function open() {
    const Client = makeGenericClientConstructor({ send: method }, 'Stream');
    const client = new Client(address, credentials.createInsecure());
    clients.push(client);
    const stream = (client as unknown as { send(request: Buffer): NodeJS.ReadableStream & { cancel(): void } }).send(Buffer.alloc(0));
    stream.on('error', () => undefined); // each test awaits what it expects; a stray error must not be an uncaught one
    streams.push(stream);
    return stream;
  }

  it('is there in the grpc-js we ship, sends batches in order, and waits while the client does not read (flow control)', async () => {
    const progress: string[] = [];
    handler = async (call) => {
      const send = directSender(call as ServerWritableStream<unknown, unknown>);
      expect(send, 'grpc-js moved the call under ServerWritableStream: see directSender').to.be.a('function');
      expect(writesBatchesAtOnce(call as ServerWritableStream<unknown, unknown>), 'grpc-js changed the call directSender frames for: see FramingCall').to.equal(true);
      const signal = new AbortController().signal;
      for (let batch = 0; batch < 3; batch++) {
        await send!(Array.from({ length: 2000 }, (_, i) => numbered(batch * 2000 + i, 1024)), signal);
        progress.push(`batch ${batch} sent`);
      }
      call.end();
    };
    const stream = open();
    const ended = new Promise((resolve, reject) => stream.on('end', resolve).on('error', reject));
    const got: number[] = [];
    stream.on('data', (message: Buffer) => got.push(message.readUInt32BE(0)));
    stream.pause(); // 2 MB per batch: far beyond HTTP/2's window while nobody reads
    await delay(300);
    expect(progress, 'a batch is not done before the client has taken it').to.deep.equal([]);
    stream.resume();
    await ended;
    expect(progress).to.deep.equal(['batch 0 sent', 'batch 1 sent', 'batch 2 sent']);
    expect(got).to.deep.equal(Array.from({ length: 6000 }, (_, i) => i));
  });

  it('writes batches of small messages together, each arriving whole and in order, whatever the write boundaries', async () => {
    // Sizes chosen so that writes of BATCH_WRITE_BYTES cut between messages at varying places; one message is larger than a write.
    const sizes = Array.from({ length: 1500 }, (_, i) => (i === 700 ? BATCH_WRITE_BYTES + 3 : 4 + ((i * 37) % 400)));
    handler = async (call) => {
      const send = directSender(call as ServerWritableStream<unknown, unknown>)!;
      const signal = new AbortController().signal;
      for (let from = 0; from < sizes.length; from += 500) {
        await send(sizes.slice(from, from + 500).map((size, i) => numbered(from + i, size)), signal);
      }
      call.end();
    };
    const stream = open();
    const got: Array<[number, number]> = [];
    stream.on('data', (message: Buffer) => got.push([message.readUInt32BE(0), message.length]));
    await new Promise((resolve, reject) => stream.on('end', resolve).on('error', reject));
    expect(got).to.deep.equal(sizes.map((size, i) => [i, size]));
  });

  it('refuses a batch with a message over the server\'s maximum: nothing of it is sent, the call ends with an error', async () => {
    const small = new Server({ 'grpc.max_send_message_length': 1000 });
    let outcome: Promise<string> | undefined;
    small.addService(
      { send: method },
      {
        send: (call: ServerWritableStream<Buffer, Buffer>) => {
          outcome = directSender(call as ServerWritableStream<unknown, unknown>)!([numbered(0, 100), numbered(1, 1001)], new AbortController().signal).then(
            () => 'sent',
            (err: Error) => err.message,
          );
          void outcome.then((message) => call.emit('error', { code: status.INTERNAL, details: message }));
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      small.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    try {
      const Client = makeGenericClientConstructor({ send: method }, 'Stream');
      const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
      clients.push(client);
      const stream = (client as unknown as { send(request: Buffer): NodeJS.ReadableStream }).send(Buffer.alloc(0));
      const got: number[] = [];
      stream.on('data', (message: Buffer) => got.push(message.readUInt32BE(0)));
      const error = await new Promise<{ code: number; details: string }>((resolve) => stream.on('error', resolve));
      expect(await outcome).to.equal("a message of 1001 bytes is over the server's maximum of 1000");
      expect(error.code).to.equal(status.INTERNAL);
      expect(got, 'the batch is sent whole or not at all').to.deep.equal([]);
    } finally {
      small.forceShutdown();
    }
  });

  it('ends the wait with the signal\'s reason when the client cancels a batch it does not read', async () => {
    let outcome: Promise<unknown> | undefined;
    const started = new Promise<void>((resolve) => {
      handler = async (call) => {
        const ending = new AbortController();
        call.once('cancelled', () => ending.abort(new Error('cancelled by the client')));
        outcome = directSender(call as ServerWritableStream<unknown, unknown>)!(
          Array.from({ length: 2000 }, (_, i) => numbered(i, 1024)),
          ending.signal,
        ).then(
          () => 'sent',
          (err: Error) => err.message,
        );
        resolve();
      };
    });
    const stream = open();
    stream.on('data', () => undefined).pause(); // a client that read, then stops
    await started;
    await delay(200);
    stream.cancel();
    expect(await outcome).to.equal('cancelled by the client');
  });
});
