import net from 'node:net';

/**
 * A TCP proxy in front of `target` (host:port) that can go silent: the
 * connections open at that moment stop forwarding in both directions, with
 * no FIN or RST, as when a host dies or a NAT or load-balancer entry is
 * dropped; connections made afterwards are forwarded.
 */
export interface SilentProxy {
  address: string;
  /** Silences the open connections; answers how many. */
  silence(): number;
  close(): Promise<void>;
}

export async function startSilentProxy(target: string): Promise<SilentProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const open = new Set<{ silent: boolean; sockets: net.Socket[] }>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    const link = { silent: false, sockets: [client, upstream] };
    open.add(link);
    client.on('data', (data) => void (link.silent || upstream.write(data)));
    upstream.on('data', (data) => void (link.silent || client.write(data)));
    const end = () => {
      open.delete(link);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of link.sockets) socket.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    silence: () => {
      let n = 0;
      for (const link of open) if (!link.silent) (link.silent = true), n++;
      return n;
    },
    close: async () => {
      for (const link of open) for (const socket of link.sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
