import net from 'node:net';

/**
 * A TCP proxy in front of `target` (host:port) that can go silent: the
 * connections open at that moment stop forwarding anything in either
 * direction, their ends (FIN) and closes included, as when a host dies or
 * a NAT or load-balancer entry is dropped; connections made afterwards are
 * forwarded.
 */
export interface SilentProxy {
  address: string;
  /** Silences the open connections; answers how many. */
  silence(): number;
  /** Connections the client has not ended or closed (silenced ones included). */
  openClients(): number;
  close(): Promise<void>;
}

export async function startSilentProxy(target: string): Promise<SilentProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const links = new Set<{ silent: boolean; client: net.Socket; upstream: net.Socket }>();
  const sockets = new Set<net.Socket>();
  // Half-open allowed, so that a FIN is passed on (or, silent, swallowed) rather than answered by Node.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ port, host, allowHalfOpen: true });
    const link = { silent: false, client, upstream };
    links.add(link);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    }
    const pipe = (from: net.Socket, to: net.Socket) => {
      from.on('data', (data) => void (link.silent || to.write(data)));
      from.on('end', () => {
        if (from === client) links.delete(link); // the client is done with it, whatever it hears
        if (!link.silent) to.end();
      });
      from.on('error', () => void (link.silent || to.destroy()));
      from.on('close', () => {
        if (from === client) links.delete(link);
        if (!link.silent) to.destroy();
      });
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    silence: () => {
      let n = 0;
      for (const link of links) if (!link.silent) (link.silent = true), n++;
      return n;
    },
    openClients: () => links.size,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
