/** Who may see the admin, and whether they may act. */
import type { AdminAccess, AdminOptions } from './types.ts';

/** Loopback by the socket's own address (IPv4 127/8, IPv6 ::1, and IPv4-mapped loopback). */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return address === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** The access a request has: the authorize option's answer, or loopback-only 'manage' without one. */
export async function resolveAccess<Req>(opts: AdminOptions<Req>, req: Req, remoteAddress: string | undefined): Promise<AdminAccess> {
  if (!opts.authorize) return isLoopback(remoteAddress) ? 'manage' : false;
  const granted = await opts.authorize(req);
  if (granted === 'manage' || granted === 'view') return granted;
  if (granted === false) return false;
  throw new TypeError(`jobsAdmin: authorize must return 'manage', 'view' or false; got ${JSON.stringify(granted)}`);
}
