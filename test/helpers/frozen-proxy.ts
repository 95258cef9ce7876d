/**
 * A TCP proxy in front of a database server that can stop answering: frozen, it keeps every
 * connection open and accepts new ones, but passes no byte either way (a server stopped with
 * SIGSTOP, a half-open connection after a failover, a network partition without a reset).
 */
import net from 'node:net';

export interface FrozenProxy {
  /** The proxy's port on 127.0.0.1. */
  port: number;
  /** From now on nothing passes, in either direction, on any connection old or new. */
  freeze(): void;
  /** Connections whose client side is still open. */
  open(): number;
  close(): Promise<void>;
}

export async function frozenProxy(target: { host: string; port: number }): Promise<FrozenProxy> {
  let frozen = false;
  const clients = new Set<net.Socket>();
  const server = net.createServer((client) => {
    clients.add(client);
    const upstream = net.connect(target.port, target.host);
    client.on('data', (d) => void (frozen || upstream.write(d)));
    upstream.on('data', (d) => void (frozen || client.write(d)));
    for (const s of [client, upstream]) s.on('error', () => undefined);
    // A client that closes is passed on even while frozen: what is counted is what the client left open.
    client.on('close', () => {
      clients.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => void (frozen || client.destroy()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => void (frozen = true),
    open: () => clients.size,
    close: async () => {
      for (const c of clients) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `url` with its host and port replaced by the proxy's. */
export function throughProxy(url: string, proxy: FrozenProxy): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return u.toString();
}
