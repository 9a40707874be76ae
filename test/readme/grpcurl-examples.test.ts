import fs from 'node:fs';
import path from 'node:path';
import { createFileRegistry, fromBinary, fromJson, toBinary, toJson, type DescMethod } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { DESCRIPTOR_SET } from '../../src/grpc/reflection';
import { sharedServer, type TestServer } from '../support/server';
import { decodeError } from '../support/status';
import { newTenant } from '../support/tenant';

const README = path.join(__dirname, '..', '..', '..', 'README.md');

interface Example {
  line: number;
  method: string; // credits.v1.Service/Method
  headers: Array<[string, string]>;
  body: string;
  /** `NAME=$(grpcurl … | jq -r .path)`: the shell variable the example sets from its answer. */
  capture?: { name: string; path: string };
  /** The `# …` comment line right above the example, which may name the refusal it shows. */
  comment: string;
}

/** Reads a `jq -r` path such as `.credit.id` or `.credits[0].id` from a JSON answer. */
function jqPath(json: unknown, path: string): unknown {
  return [...path.matchAll(/\.(\w+)|\[(\d+)\]/g)].reduce<unknown>(
    (value, [, key, index]) => (value as Record<string, unknown> | undefined)?.[key ?? Number(index)],
    json,
  );
}

/** The `grpcurl … -d '<json>' localhost:50051 <service>/<method>` calls of the README, in order. */
function readmeExamples(): Example[] {
  const lines = fs.readFileSync(README, 'utf8').split('\n');
  const examples: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    const assignment = /^([A-Z_]+)=\$\(grpcurl /.exec(lines[i]!);
    if (!lines[i]!.startsWith('grpcurl ') && !assignment) continue;
    const start = i;
    let command = lines[i]!;
    // Continued by a trailing backslash, or by a -d '…' body that spans lines.
    const open = () => command.endsWith('\\') || (command.split("'").length - 1) % 2 === 1;
    while (open() && i + 1 < lines.length) command = `${command.replace(/\\$/, '')} ${lines[++i]!.trim()}`;
    const target = /localhost:50051\s+(credits\.v1\.\w+\/\w+)/.exec(command);
    if (!target) continue; // list, describe, health: served by reflection/health tests
    const headers = [...command.matchAll(/-H "([^:"]+):\s*([^"]*)"/g)].map((m) => [m[1]!.toLowerCase(), m[2]!] as [string, string]);
    // -d '<json>', or -d "<json>" with \" escapes (so that shell variables expand in it).
    const quoted = /-d "((?:[^"\\]|\\.)*)"/.exec(command)?.[1]?.replace(/\\(.)/g, '$1');
    const body = /-d '([^']*)'/.exec(command)?.[1] ?? quoted ?? '{}';
    const jq = /\|\s*jq -r '?([.\w[\]]+)'?\s*\)/.exec(command);
    const capture = assignment && jq ? { name: assignment[1]!, path: jq[1]! } : undefined;
    const above = lines[start - 1]?.trim() ?? '';
    examples.push({ line: start + 1, method: target[1]!, headers, body, capture, comment: above.startsWith('#') ? above : '' });
  }
  return examples;
}

/**
 * A streaming example (grpcurl prints messages until the user stops it): the
 * stream must open and answer no error; its first message, if one comes
 * within a moment, is the answer.
 */
function firstOfStream(client: Client, method: string, request: Uint8Array, metadata: Metadata, decode: (res: Buffer) => unknown): Promise<{ err?: ServiceError; json?: unknown }> {
  return new Promise((resolve) => {
    const call = client.makeServerStreamRequest(`/${method}`, (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b, request, metadata, {});
    let timer: NodeJS.Timeout | undefined;
    const done = (answer: { err?: ServiceError; json?: unknown }) => {
      clearTimeout(timer);
      call.removeAllListeners();
      call.on('error', () => {});
      call.cancel();
      resolve(answer);
    };
    call.once('metadata', () => (timer = setTimeout(() => done({}), 300)));
    call.once('data', (res: Buffer) => done({ json: decode(res) }));
    call.once('error', (err: ServiceError) => done({ err }));
  });
}

/**
 * What grpcurl does with each README example, without grpcurl (it cannot be
 * installed here): read the JSON with protobuf's JSON mapping against the
 * descriptors reflection serves (gen/credits.binpb), send the binary request,
 * and read the answer back. An example that does not parse, names a method
 * that does not exist, or fails with anything but the error it documents,
 * fails this test.
 */
describe('README grpcurl examples', () => {
  let server: TestServer;
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, fs.readFileSync(DESCRIPTOR_SET)));
  const examples = readmeExamples();

  before(async () => {
    server = await sharedServer();
  });

  it('finds the examples', () => {
    expect(examples.length).to.be.greaterThan(4);
  });

  it('runs every example in order against a fresh tenant', async () => {
    const tenant = await newTenant(server.dataSource);
    const client = new Client(server.address, credentials.createInsecure());
    const captured = new Map<string, string>();
    try {
      for (const example of examples) {
        const [serviceName, methodName] = example.method.split('/') as [string, string];
        const service = registry.getService(serviceName);
        expect(service, `README line ${example.line}: service ${serviceName}`).to.not.equal(undefined);
        const method = service!.methods.find((m) => m.name === methodName) as DescMethod | undefined;
        expect(method, `README line ${example.line}: method ${example.method}`).to.not.equal(undefined);
        // Variables set by earlier examples take their values; others become a placeholder id.
        let placeholders = 0;
        const body = example.body.replace(/\$([A-Z_]+)/g, (_m, name: string) => captured.get(name) ?? (placeholders++, '00000000-0000-4000-8000-000000000000'));
        const request = fromJson(method!.input, JSON.parse(body), { registry });
        const metadata = new Metadata();
        for (const [name, value] of example.headers) metadata.set(name, value.replace('$KEY', tenant.rwKey));
        const answer =
          method!.methodKind === 'server_streaming'
            ? await firstOfStream(client, example.method, toBinary(method!.input, request), metadata, (res) => toJson(method!.output, fromBinary(method!.output, res), { registry }))
            : await new Promise<{ err?: ServiceError; json?: unknown }>((resolve) =>
                client.makeUnaryRequest(
                  `/${example.method}`,
                  (b: Uint8Array) => Buffer.from(b),
                  (b: Buffer) => b,
                  toBinary(method!.input, request),
                  metadata,
                  (err, res) => resolve(err ? { err } : { json: toJson(method!.output, fromBinary(method!.output, res!), { registry }) }),
                ),
              );
        if (answer.err) {
          // Examples that show a refusal say so in the README; everything else must succeed.
          expect(
            [status.NOT_FOUND, status.FAILED_PRECONDITION],
            `README line ${example.line}: ${example.method} failed: ${status[answer.err.code]} ${answer.err.details}`,
          ).to.include(answer.err.code);
          // A refusal is right where an id is a placeholder, or where the comment above names its reason.
          const reason = decodeError(answer.err).reason ?? '';
          const documented = reason !== '' && example.comment.includes(reason);
          expect(placeholders > 0 || documented, `README line ${example.line}: ${status[answer.err.code]} ${answer.err.details}: a refusal only where an id is a placeholder or the comment names it`).to.equal(true);
        }
        if (example.capture) {
          const value = jqPath(answer.json, example.capture.path);
          expect(value, `README line ${example.line}: ${example.capture.path} of the answer`).to.be.a('string');
          captured.set(example.capture.name, value as string);
        }
      }
    } finally {
      client.close();
    }
  });
});
