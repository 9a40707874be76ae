import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../src/config';

describe('configuration (unit)', () => {
  it('takes whole numbers written in digits only', () => {
    expect(loadConfig({ CREDITS_SHUTDOWN_GRACE_MS: '2500' }).shutdownGraceMs).to.equal(2500);
    // Number() reads these as 0, 10 and 16: a blank grace period meant none at all.
    for (const raw of [' ', '1e1', '0x10', '-1', '1.5', '+5']) {
      expect(() => loadConfig({ CREDITS_SHUTDOWN_GRACE_MS: raw }), JSON.stringify(raw)).to.throw(ConfigError, /CREDITS_SHUTDOWN_GRACE_MS must be an integer/);
    }
  });

  it('times statements out after 30 s unless told otherwise (CREDITS_DB_STATEMENT_TIMEOUT_MS)', () => {
    expect(loadConfig({}).dbStatementTimeoutMs).to.equal(30_000);
    expect(loadConfig({ CREDITS_DB_STATEMENT_TIMEOUT_MS: '200' }).dbStatementTimeoutMs).to.equal(200);
    for (const raw of ['0', '99', '3600001']) {
      expect(() => loadConfig({ CREDITS_DB_STATEMENT_TIMEOUT_MS: raw }), raw).to.throw(ConfigError, /CREDITS_DB_STATEMENT_TIMEOUT_MS/);
    }
  });

  it('hands out version-1 event cursors unless told 2 (every version reads both)', () => {
    expect(loadConfig({}).eventCursorVersion).to.equal(1);
    expect(loadConfig({ CREDITS_EVENT_CURSOR_VERSION: '2' }).eventCursorVersion).to.equal(2);
    expect(() => loadConfig({ CREDITS_EVENT_CURSOR_VERSION: '3' })).to.throw(ConfigError, /CREDITS_EVENT_CURSOR_VERSION/);
  });

  it('stores REDEMPTION_CREATED by reference unless told to store snapshots (CREDITS_REDEMPTION_EVENT_SNAPSHOTS)', () => {
    expect(loadConfig({}).redemptionEventSnapshots).to.equal(false);
    expect(loadConfig({ CREDITS_REDEMPTION_EVENT_SNAPSHOTS: 'on' }).redemptionEventSnapshots).to.equal(true);
    expect(loadConfig({ CREDITS_REDEMPTION_EVENT_SNAPSHOTS: 'off' }).redemptionEventSnapshots).to.equal(false);
    expect(() => loadConfig({ CREDITS_REDEMPTION_EVENT_SNAPSHOTS: 'yes' })).to.throw(ConfigError, /CREDITS_REDEMPTION_EVENT_SNAPSHOTS must be on or off/);
  });

  it('takes ports from 0 to 65535 only, before anything binds', () => {
    expect(loadConfig({ CREDITS_ADDRESS: '127.0.0.1:65535' }).address).to.equal('127.0.0.1:65535');
    expect(() => loadConfig({ CREDITS_ADDRESS: '127.0.0.1:99999' })).to.throw(ConfigError, /CREDITS_ADDRESS must be host:port \(port 0 to 65535\)/);
    expect(() => loadConfig({ CREDITS_METRICS_ADDRESS: '0.0.0.0:70000' })).to.throw(ConfigError, /CREDITS_METRICS_ADDRESS/);
  });

  it('names a TLS file that cannot be read, in one sentence', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'credits-config-'));
    try {
      const cert = path.join(dir, 'cert.pem');
      fs.writeFileSync(cert, 'x');
      const missing = path.join(dir, 'key.pem');
      expect(() => loadConfig({ CREDITS_TLS_CERT: cert, CREDITS_TLS_KEY: missing })).to.throw(ConfigError, `CREDITS_TLS_KEY must be a readable file, got "${missing}" (ENOENT)`);
      expect(loadConfig({ CREDITS_TLS_CERT: cert, CREDITS_TLS_KEY: cert }).tls).to.deep.equal({ certFile: cert, keyFile: cert, clientCaFile: undefined });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
