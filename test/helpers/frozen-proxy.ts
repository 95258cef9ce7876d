/**
 * A TCP proxy in front of a database server that can stop answering: frozen, it keeps every
 * connection open and accepts new ones, but passes no byte either way and never closes its side,
 * not even after the client's FIN (a server stopped with SIGSTOP, a half-open connection after a
 * failover, a network partition without a reset). A client that ends a connection politely is then
 * left waiting; only one that destroys its socket is rid of it.
 */
import net from 'node:net';

export interface FrozenProxy {
  /** The proxy's port on 127.0.0.1. */
  port: number;
  /** From now on nothing passes, in either direction, on any connection old or new. */
  freeze(): void;
  close(): Promise<void>;
}

export async function frozenProxy(target: { host: string; port: number }): Promise<FrozenProxy> {
  let frozen = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d) => void (frozen || upstream.write(d)));
    upstream.on('data', (d) => void (frozen || client.write(d)));
    client.on('end', () => void (frozen || upstream.end()));
    upstream.on('end', () => void (frozen || client.end()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => void (frozen = true),
    close: async () => {
      for (const s of sockets) s.destroy();
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

/** Sockets of this process still open towards the proxy: what would keep the process alive. */
export function socketsTo(proxy: FrozenProxy): number {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h) => h instanceof net.Socket && !h.destroyed && h.remotePort === proxy.port).length;
}

/**
 * SIGSTOP a backend process of this test's; continued by `continueStopped` (each suite's
 * afterEach) or, whatever happens, when this process exits. A stopped backend left behind holds
 * up every shutdown of the server (a restart waits for it for ever).
 */
const stoppedPids = new Set<number>();
export function stopProcess(pid: number): void {
  stoppedPids.add(pid);
  process.kill(pid, 'SIGSTOP');
}
export function continueStopped(pid?: number): void {
  for (const p of pid === undefined ? [...stoppedPids] : [pid]) {
    try {
      process.kill(p, 'SIGCONT');
    } catch {
      // gone already
    }
    stoppedPids.delete(p);
  }
}
process.on('exit', () => continueStopped());
