import path from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { credentials, loadPackageDefinition, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { expect } from 'chai';
import { HealthClient } from '../support/health-status';
import { sharedServer, type TestServer } from '../support/server';

const REFLECTION_PROTO = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');

interface ReflectionResponse {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
}
type ReflectionClient = Client & { ServerReflectionInfo(): ClientDuplexStream<Record<string, unknown>, ReflectionResponse> };

function ask(client: ReflectionClient, request: Record<string, unknown>): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const stream = client.ServerReflectionInfo();
    stream.once('data', (response: ReflectionResponse) => {
      resolve(response);
      stream.end();
    });
    stream.once('error', reject);
    stream.write(request);
  });
}

describe('CouponService discovery (reflection and health)', () => {
  let server: TestServer;
  let reflection: ReflectionClient;

  before(async () => {
    server = await sharedServer();
    const definition = loadSync(REFLECTION_PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
    const grpcObject = loadPackageDefinition(definition) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => ReflectionClient } } };
    };
    reflection = new grpcObject.grpc.reflection.v1.ServerReflection(server.address, credentials.createInsecure());
  });
  after(() => reflection.close());

  it('lists CouponService and serves its descriptor with snake_case fields and comments', async () => {
    const list = await ask(reflection, { list_services: '' });
    expect(list.list_services_response!.service.map((s) => s.name)).to.include('credits.v1.CouponService');

    const response = await ask(reflection, { file_containing_symbol: 'credits.v1.CouponService' });
    const files = response.file_descriptor_response!.file_descriptor_proto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
    const file = files.find((f) => f.name === 'credits/v1/coupon_service.proto')!;
    expect(files.map((f) => f.name)).to.include('credits/v1/money.proto');
    expect(file.service[0]!.method.map((m) => m.name)).to.deep.equal([
      'CreateCoupon',
      'GetCoupon',
      'ListCoupons',
      'UpdateCoupon',
      'DeleteCoupon',
      'ValidateCoupon',
      'RedeemCoupon',
      'ListCouponRedemptions',
    ]);
    const fields = (message: string) => file.messageType.find((m) => m.name === message)!.field.map((f) => f.name);
    expect(fields('RedeemCouponRequest')).to.deep.equal(['code', 'customer_id', 'plan_id', 'product_id', 'amount']);
    expect(fields('ValidateCouponResponse')).to.include.members(['valid', 'reason', 'discount']);
    expect(fields('ListCouponsRequest')).to.deep.equal(['page_size', 'page_token', 'enabled', 'code_prefix']);
    expect(fields('ListCouponRedemptionsRequest')).to.deep.equal(['page_size', 'page_token', 'coupon_id', 'customer_id']);
    const comments = file.sourceCodeInfo!.location.map((l) => l.leadingComments).join('\n');
    for (const reason of ['COUPON_NOT_FOUND', 'COUPON_CODE_ALREADY_EXISTS', 'COUPON_REDEEMED', 'COUPON_DISABLED', 'COUPON_EXPIRED', 'COUPON_NOT_APPLICABLE', 'COUPON_MAX_REDEMPTIONS_REACHED', 'COUPON_CUSTOMER_LIMIT_REACHED']) {
      expect(comments).to.contain(reason);
    }
  });

  it('reports CouponService SERVING in the health service', async () => {
    const health = new HealthClient(server.address, credentials.createInsecure());
    try {
      const answer = await new Promise<string>((resolve, reject) =>
        health.check({ service: 'credits.v1.CouponService' }, {}, (err, res) => (err ? reject(err) : resolve(res.status))),
      );
      expect(answer).to.equal('SERVING');
    } finally {
      health.close();
    }
  });
});
