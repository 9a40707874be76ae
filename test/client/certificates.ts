import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** PEM files made for one test run: a CA, a server certificate for 127.0.0.1/localhost and client certificates. */
export interface TestCertificates {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Signed by `caCert` for client authentication. */
  clientCert: string;
  clientKey: string;
  /** Signed by another CA the server does not trust. */
  strangerCert: string;
  strangerKey: string;
  /** File paths, for the server's `tls` option. */
  files: { caCert: string; serverCert: string; serverKey: string };
  remove(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A self-signed CA (P-256 keys, one day) in `dir`. */
function makeCa(dir: string, name: string): void {
  fs.writeFileSync(
    path.join(dir, `${name}.cnf`),
    [
      '[req]',
      'distinguished_name = dn',
      'x509_extensions = v3_ca',
      'prompt = no',
      '[dn]',
      `CN = credits test ${name}`,
      '[v3_ca]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
    ].join('\n'),
  );
  openssl(dir, ['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1']
    .concat(['-config', `${name}.cnf`, '-keyout', `${name}.key`, '-out', `${name}.pem`]));
}

/** A leaf certificate for `name`, signed by the CA `ca`, with the given extensions. */
function makeLeaf(dir: string, name: string, ca: string, subject: string, extensions: string[]): void {
  fs.writeFileSync(path.join(dir, `${name}.ext`), ['basicConstraints = CA:FALSE', 'keyUsage = critical, digitalSignature', ...extensions].join('\n'));
  openssl(dir, ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', subject, '-keyout', `${name}.key`, '-out', `${name}.csr`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.pem`]);
}

export function makeTestCertificates(): TestCertificates {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'credits-tls-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  makeLeaf(dir, 'server', 'ca', '/CN=localhost', ['extendedKeyUsage = serverAuth', 'subjectAltName = IP:127.0.0.1, DNS:localhost']);
  makeLeaf(dir, 'client', 'ca', '/CN=billing-svc', ['extendedKeyUsage = clientAuth']);
  makeLeaf(dir, 'stranger', 'other-ca', '/CN=stranger', ['extendedKeyUsage = clientAuth']);
  const read = (file: string) => fs.readFileSync(path.join(dir, file), 'utf8');
  return {
    dir,
    caCert: read('ca.pem'),
    serverCert: read('server.pem'),
    serverKey: read('server.key'),
    clientCert: read('client.pem'),
    clientKey: read('client.key'),
    strangerCert: read('stranger.pem'),
    strangerKey: read('stranger.key'),
    files: { caCert: path.join(dir, 'ca.pem'), serverCert: path.join(dir, 'server.pem'), serverKey: path.join(dir, 'server.key') },
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
