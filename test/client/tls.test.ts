import { expect } from 'chai';
import type { DataSource } from 'typeorm';
import { createCreditsClient, CreditsError, status, type TlsOptions } from '../../client/src';
import { startGrpcServer, type GrpcServer } from '../../src/grpc/server';
import { createLogger } from '../../src/logger';
import { openTestDataSource } from '../support/database';
import { newTenant, type TestTenant } from '../support/tenant';
import { makeTestCertificates, type TestCertificates } from './certificates';

describe('credits client over TLS', () => {
  let certs: TestCertificates;
  let dataSource: DataSource;
  let tenant: TestTenant;
  let tlsServer: GrpcServer;
  let mtlsServer: GrpcServer;

  before(async function () {
    this.timeout(60_000);
    certs = makeTestCertificates();
    dataSource = await openTestDataSource(4);
    tenant = await newTenant(dataSource);
    const logger = createLogger('silent');
    const { serverCert, serverKey, caCert } = certs.files;
    tlsServer = await startGrpcServer({ dataSource, logger }, { address: '127.0.0.1:0', tls: { certFile: serverCert, keyFile: serverKey, clientCaFile: undefined } });
    mtlsServer = await startGrpcServer({ dataSource, logger }, { address: '127.0.0.1:0', tls: { certFile: serverCert, keyFile: serverKey, clientCaFile: caCert } });
  });
  after(async () => {
    await tlsServer?.shutdown(1000);
    await mtlsServer?.shutdown(1000);
    await dataSource?.destroy();
    certs?.remove();
  });

  /** One write and one read through a fresh client; answers the balance. */
  async function addAndRead(server: GrpcServer, tls: true | TlsOptions | undefined, host = '127.0.0.1'): Promise<bigint> {
    const client = createCreditsClient({ address: `${host}:${server.port}`, apiKey: tenant.rwKey, tls, retry: false, defaultDeadlineMs: 5000 });
    try {
      await client.promotionalCredits.addPromotionalCredits({ customerId: 'tls-cust', amount: 100n, description: 'over tls' });
      const res = await client.promotionalCredits.getCustomerBalance({ customerId: 'tls-cust' });
      return res.balance!.balances[0]!.amount;
    } finally {
      client.close();
    }
  }

  async function refusal(server: GrpcServer, tls: true | TlsOptions | undefined): Promise<CreditsError> {
    const err = await addAndRead(server, tls).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, 'the call should have been refused').to.be.instanceOf(CreditsError);
    return err as CreditsError;
  }

  it('connects with TLS to a server whose certificate our CA signed (by IP and by name)', async () => {
    const before = await addAndRead(tlsServer, { ca: certs.caCert });
    expect(await addAndRead(tlsServer, { ca: Buffer.from(certs.caCert) }, 'localhost')).to.equal(before + 100n);
  });

  it('refuses a server certificate the client does not trust, and plaintext to a TLS server', async () => {
    expect((await refusal(tlsServer, true)).code, 'system roots do not know the test CA').to.equal(status.UNAVAILABLE);
    expect((await refusal(tlsServer, undefined)).code, 'plaintext').to.equal(status.UNAVAILABLE);
  });

  it('connects with mutual TLS when the client presents a certificate the server CA signed', async () => {
    const balance = await addAndRead(mtlsServer, { ca: certs.caCert, cert: certs.clientCert, key: certs.clientKey });
    expect(balance > 0n).to.equal(true);
  });

  it('refuses a mutual-TLS connection without a client certificate, or with one from another CA', async () => {
    const without = await refusal(mtlsServer, { ca: certs.caCert });
    expect(without.codeName).to.equal('UNAVAILABLE');
    const stranger = await refusal(mtlsServer, { ca: certs.caCert, cert: certs.strangerCert, key: certs.strangerKey });
    expect(stranger.codeName).to.equal('UNAVAILABLE');
  });

  it('rejects a client certificate without its key, or a file path for PEM text, before connecting', () => {
    expect(() => createCreditsClient({ address: '127.0.0.1:1', apiKey: 'k', tls: { cert: certs.clientCert } })).to.throw(TypeError, /together/);
    expect(() => createCreditsClient({ address: '127.0.0.1:1', apiKey: 'k', tls: { ca: '/etc/ssl/ca.pem' } })).to.throw(TypeError, /tls\.ca must be PEM text/);
    expect(() => createCreditsClient({ address: '127.0.0.1:1', apiKey: 'k', tls: { cert: 'client.pem', key: certs.clientKey } })).to.throw(TypeError, /tls\.cert must be PEM text/);
  });
});
