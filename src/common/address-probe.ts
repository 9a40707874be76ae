import net from 'node:net';

/** host and port of a host:port address (an IPv6 host in brackets: [::1]:50051). */
export function hostAndPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(colon + 1)) };
}

/**
 * Why `address` (host:port, as config checked it) cannot be listened on
 * now, if it is taken (EADDRINUSE) or its port is privileged (EACCES):
 * listens and closes again at once. Other errors are left to the real bind
 * (a name that resolves to several addresses, of which grpc-js binds those
 * it can, while this probe tries the first). Port 0 (any free port) is not
 * probed. The server still binds for real later, and says so if the
 * address was taken meanwhile; this only tells an operator before the
 * database is opened, started or migrated, which can take seconds.
 */
export async function listenProblem(address: string): Promise<Error | undefined> {
  const { host, port } = hostAndPort(address);
  if (port === 0) return undefined;
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host, port, exclusive: true }, resolve);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EADDRINUSE' || code === 'EACCES' ? (err as Error) : undefined;
  }
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return undefined;
}
