import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../src/config';

describe('observability configuration (unit)', () => {
  it('serves metrics on 0.0.0.0:9464 unless CREDITS_METRICS_ADDRESS says otherwise or off', () => {
    expect(loadConfig({}).metricsAddress).to.equal('0.0.0.0:9464');
    expect(loadConfig({ CREDITS_METRICS_ADDRESS: '127.0.0.1:0' }).metricsAddress).to.equal('127.0.0.1:0');
    expect(loadConfig({ CREDITS_METRICS_ADDRESS: 'off' }).metricsAddress).to.equal(undefined);
    expect(() => loadConfig({ CREDITS_METRICS_ADDRESS: 'nine' })).to.throw(ConfigError, /CREDITS_METRICS_ADDRESS/);
  });

  it('traces only when an OTLP endpoint is set, over HTTP (protobuf by default, or JSON)', () => {
    expect(loadConfig({}).tracing).to.equal(undefined);
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).tracing).to.deep.equal({
      protocol: 'http/protobuf',
      serviceName: 'credits',
      scheduleDelayMs: 5000,
    });
    expect(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_SERVICE_NAME: 'billing-credits' }).tracing)
      .to.include({ protocol: 'http/json', serviceName: 'billing-credits' });
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).tracing).to.equal(undefined);
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).to.throw(ConfigError, /4318/);
  });

  it('takes a database URL for session work (migration lock, LISTEN) only beside DATABASE_URL', () => {
    const url = 'postgres://credits@db:5432/credits';
    expect(loadConfig({ DATABASE_URL: 'postgres://credits@pgbouncer:6432/credits', CREDITS_SESSION_DATABASE_URL: url }).sessionDatabaseUrl).to.equal(url);
    expect(() => loadConfig({ CREDITS_SESSION_DATABASE_URL: url })).to.throw(ConfigError, /needs DATABASE_URL/);
  });
});
