import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { createCreditsClient, CreditsError, type CreditsClient } from '../../client/src';
import { startGrpcServer, type GrpcServer } from '../../src/grpc/server';
import type { Logger } from '../../src/logger';
import { openTestDataSource } from '../support/database';
import type { TestServer } from '../support/server';
import type { TestTenant } from '../support/tenant';
import { useTenantClients } from '../support/tenant-clients';

/** Awaits a call that must fail and answers its CreditsError. */
export async function rejection(call: Promise<unknown>): Promise<CreditsError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the call should have failed').to.be.instanceOf(CreditsError);
  return err as CreditsError;
}

export interface CreditsClientSuite {
  readonly server: TestServer;
  readonly tenant: TestTenant;
  /** The published client (client/src) with the tenant's read+write key, made before each test and closed after it. */
  readonly client: CreditsClient;
}

/** useTenantClients() with the published client in place of the promisified generated ones. */
export function useCreditsClient(): CreditsClientSuite {
  const t = useTenantClients();
  let client: CreditsClient | undefined;
  beforeEach(() => {
    client = createCreditsClient({ address: t.server.address, apiKey: t.tenant.rwKey });
  });
  afterEach(() => client?.close());
  return {
    get server() {
      return t.server;
    },
    get tenant() {
      return t.tenant;
    },
    get client() {
      if (client === undefined) throw new Error('useCreditsClient: use it inside hooks and tests');
      return client;
    },
  };
}

export interface OwnServer {
  readonly dataSource: DataSource;
  readonly server: GrpcServer;
  /** `127.0.0.1:<port>`, the same across restarts. */
  readonly address: string;
  /** Stops the server, and starts it again on the same port after `downMs`. */
  restart(downMs?: number): Promise<void>;
}

/** A server of the suite's own over the test database, logging to `logger`, for suites that stop and restart it. */
export function useOwnServer(logger: Logger): OwnServer {
  let dataSource: DataSource | undefined;
  let server: GrpcServer | undefined;
  let address = '';
  before(async () => {
    dataSource = await openTestDataSource(4);
    server = await startGrpcServer({ dataSource, logger }, { address: '127.0.0.1:0' });
    address = `127.0.0.1:${server.port}`;
  });
  after(async () => {
    await server?.shutdown(1000);
    await dataSource?.destroy();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useOwnServer: use it inside hooks and tests');
    return value;
  };
  return {
    get dataSource() {
      return started(dataSource);
    },
    get server() {
      return started(server);
    },
    get address() {
      return address;
    },
    async restart(downMs = 0) {
      await started(server).shutdown(1000);
      await new Promise((resolve) => setTimeout(resolve, downMs));
      server = await startGrpcServer({ dataSource: started(dataSource), logger }, { address });
    },
  };
}
