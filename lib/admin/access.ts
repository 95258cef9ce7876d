/** Who may see the admin, and whether they may act. */
import type { IncomingHttpHeaders } from 'node:http';
import type { AdminAccess, AdminOptions, AdminRequest, MetricsAccess } from './types.ts';
import { HttpError } from './types.ts';

/** Loopback by the socket's own address (IPv4 127/8, IPv6 ::1, and IPv4-mapped loopback). */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return address === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** The hostname of a Host header, lowercased, without its port ('[::1]' keeps its brackets). */
export function hostname(host: string | undefined): string | null {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::\d{1,5})?$/i.exec(host ?? '');
  return m ? m[1].toLowerCase() : null;
}

/**
 * Names that only ever resolve to this machine. A DNS-rebinding page reaches a loopback socket
 * under its own name (Host: evil.example), so without authorize the Host must be one of these.
 */
export function isLoopbackHost(name: string | null, allowed: ReadonlySet<string>): boolean {
  if (!name) return false;
  return name === 'localhost' || name.endsWith('.localhost') || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name) || allowed.has(name);
}

/**
 * A proxy on the same machine makes every request come from 127.0.0.1, so a request that says it
 * was forwarded is not a loopback client (fail closed). Not every proxy says so (nginx adds none of
 * these by default): behind a proxy, pass authorize.
 */
export function proxyHeader(headers: IncomingHttpHeaders): string | null {
  for (const name of Object.keys(headers)) {
    if (CLIENT_ADDRESS_HEADERS.has(name) || name.startsWith('x-forwarded-') || name.startsWith('x-original-forwarded-')) return name;
  }
  return null;
}

/** Headers proxies, CDNs and load balancers put the client's address in (Node lowercases names). */
const CLIENT_ADDRESS_HEADERS = new Set(['forwarded', 'via', 'x-real-ip', 'x-client-ip', 'true-client-ip', 'cf-connecting-ip', 'x-cluster-client-ip', 'fastly-client-ip']);

/** Whether a request may read `GET metrics`: metricsAuthorize decides alone when given, else the admin's own rules. */
export async function resolveMetricsAccess<Req>(opts: AdminOptions<Req>, allowedHosts: ReadonlySet<string>, req: AdminRequest, raw: Req): Promise<void> {
  if (!opts.metricsAuthorize) {
    await resolveAccess(opts, allowedHosts, req, raw);
    return;
  }
  const granted: MetricsAccess = await opts.metricsAuthorize(raw);
  if (granted === false) throw new HttpError(403, 'forbidden: metricsAuthorize refused this request');
  if (granted !== true && granted !== 'view' && granted !== 'manage') {
    throw new TypeError(`jobsAdmin: metricsAuthorize must return true, 'view', 'manage' or false; got ${JSON.stringify(granted)}`);
  }
}

/** The access a request has: the authorize option's answer, or 'manage' for a direct loopback client without one; else a 403. */
export async function resolveAccess<Req>(opts: AdminOptions<Req>, allowedHosts: ReadonlySet<string>, req: AdminRequest, raw: Req): Promise<'manage' | 'view'> {
  if (!opts.authorize) {
    if (!isLoopback(req.remoteAddress)) throw new HttpError(403, 'forbidden: the jobs admin is served to loopback clients only unless an authorize option allows this request');
    const via = proxyHeader(req.headers);
    if (via) throw new HttpError(403, `forbidden: this request came through a proxy (it carries ${via}); behind a proxy the jobs admin needs an authorize option`);
    if (!isLoopbackHost(hostname(req.headers.host), allowedHosts)) {
      throw new HttpError(403, 'forbidden: without an authorize option the Host must be localhost, *.localhost, 127.x.x.x, [::1] or one of allowedHosts');
    }
    return 'manage';
  }
  const granted: AdminAccess = await opts.authorize(raw);
  if (granted === 'manage' || granted === 'view') return granted;
  if (granted === false) throw new HttpError(403, 'forbidden: authorize refused this request');
  throw new TypeError(`jobsAdmin: authorize must return 'manage', 'view' or false; got ${JSON.stringify(granted)}`);
}
