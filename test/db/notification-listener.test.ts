import { expect } from 'chai';
import pg from 'pg';
import { NotificationListener, type NotificationHandlers } from '../../src/db/notification-listener';
import { createLogger } from '../../src/logger';
import { testDatabaseUrl } from '../support/database';
import { eventually } from '../support/eventually';
import { startSilentProxy, type SilentProxy } from '../support/silent-proxy';

describe('NotificationListener', function () {
  this.timeout(30_000);
  let url: URL;
  let proxy: SilentProxy;
  const listeners: NotificationListener[] = [];

  before(async () => {
    url = new URL(await testDatabaseUrl());
    proxy = await startSilentProxy(`${url.hostname}:${url.port || 5432}`);
  });
  after(async () => {
    await Promise.all(listeners.map((l) => l.close()));
    await proxy.close();
  });

  /** A listener of channel listener_test connected through the proxy. */
  const listenerThroughProxy = (name: string, probe: { everyMs: number; timeoutMs: number }, handlers: NotificationHandlers) => {
    const through = new URL(url.toString());
    [through.hostname, through.port] = proxy.address.split(':') as [string, string];
    const listener = new NotificationListener(
      { connectionString: through.toString() },
      {
        channels: ['listener_test'],
        applicationName: `credits-test (${name})`,
        logger: createLogger('silent'),
        messages: { listening: 'listening', lost: 'lost', notYet: 'not yet' },
        probe,
      },
      handlers,
    );
    listeners.push(listener);
    return listener;
  };

  it('gives up a connection that went silent (no FIN, no RST), listens again on a new one and hears what comes then', async () => {
    const heard: string[] = [];
    const told: string[] = [];
    const listener = listenerThroughProxy(
      'silent listener',
      { everyMs: 100, timeoutMs: 300 },
      { notification: (_channel, payload) => heard.push(payload), listening: () => told.push('listening'), lost: () => told.push('lost') },
    );
    await listener.start();
    expect(listener.isListening()).to.equal(true);
    const notify = async (payload: string) => {
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      await client.query(`SELECT pg_notify('listener_test', $1)`, [payload]);
      await client.end();
    };
    await notify('before');
    expect(await eventually(2_000, async () => heard.join(), (h) => h === 'before')).to.equal('before');

    expect(proxy.silence()).to.equal(1);
    expect(await eventually(5_000, async () => told.join(), (h) => h === 'listening,lost,listening')).to.equal('listening,lost,listening');
    expect(listener.isListening()).to.equal(true);
    await notify('after');
    expect(await eventually(2_000, async () => heard.join(), (h) => h === 'before,after')).to.equal('before,after');
    // The silent connection is cut, not left to the kernel: only the new one is open.
    expect(await eventually(3_000, async () => proxy.openClients(), (n) => n === 1)).to.equal(1);
  });

  it('closes while its connection is silent (the goodbye is never answered): the socket is cut', async () => {
    const listener = listenerThroughProxy('closing listener', { everyMs: 60_000, timeoutMs: 60_000 }, { notification: () => {} });
    await listener.start();
    const open = proxy.openClients();
    expect(proxy.silence()).to.be.at.least(1);
    await listener.close(); // waited for ever for the server's answer to its goodbye
    expect(await eventually(3_000, async () => proxy.openClients(), (n) => n === open - 1)).to.equal(open - 1);
  });
});
