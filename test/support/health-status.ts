import { credentials, makeGenericClientConstructor, type CallOptions, type ChannelCredentials, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { service } from 'grpc-health-check';

/** grpc.health.v1 serving states (grpc-health-check loads enums as strings). */
export const HealthCheckResponse_ServingStatus = { SERVING: 'SERVING', NOT_SERVING: 'NOT_SERVING' } as const;

interface HealthClientInstance {
  check(
    request: { service: string },
    options: Partial<CallOptions>,
    callback: (err: ServiceError | null, response: { status: string }) => void,
  ): void;
  watch(request: { service: string }): ClientReadableStream<{ status: string }>;
  close(): void;
}

/** A client of the standard health service, from the package's own service definition. */
export const HealthClient = makeGenericClientConstructor(service, 'Health') as unknown as new (
  address: string,
  credentials: ChannelCredentials,
) => HealthClientInstance;

/** One grpc.health.v1 Check of `service` ('' for the server), without an API key; rejects with the call's error. */
export async function checkHealth(address: string, service: string): Promise<string> {
  const health = new HealthClient(address, credentials.createInsecure());
  try {
    return await new Promise<string>((resolve, reject) => health.check({ service }, {}, (err, res) => (err ? reject(err) : resolve(res.status))));
  } finally {
    health.close();
  }
}
