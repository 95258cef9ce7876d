/**
 * CSRF protection, three layers:
 * - a signed double-submit token: the cookie holds nonce + HMAC(secret, nonce), and every state
 *   change repeats it in the X-CSRF-Token header (HTMX, API clients) or the _csrf field (plain
 *   forms). A value the server did not sign never verifies, so a cookie planted by a same-site
 *   origin (another localhost port, a sibling subdomain) is useless;
 * - the browser's own word: a state change whose Sec-Fetch-Site is not same-origin, or whose Origin
 *   is not this host, is refused;
 * - over HTTPS the cookie is named __Host-…, which no other origin can set or shadow.
 * The cookie is SameSite=Lax, not Strict: Strict is not sent on a cross-site navigation (a link
 * from chat), which would mint a new token and break every open tab; the token does the work.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { BodyFields } from './types.ts';

export const CSRF_HEADER = 'x-csrf-token';
export const CSRF_FIELD = '_csrf';
const NONCE = 16;
const MAC = 16;

/** The cookie's name: over HTTPS the __Host- prefix (Secure, Path=/, no Domain: no other origin can set it). */
export function cookieName(secure: boolean): string {
  return secure ? '__Host-sqljobs_csrf' : 'sqljobs_csrf';
}

function mac(secret: Buffer, nonce: Buffer): Buffer {
  return createHmac('sha256', secret).update(nonce).digest().subarray(0, MAC);
}

/** A fresh token: 16 random bytes and their 128-bit HMAC, base64url (43 characters). */
export function signToken(secret: Buffer): string {
  const nonce = randomBytes(NONCE);
  return Buffer.concat([nonce, mac(secret, nonce)]).toString('base64url');
}

/** Whether this server (or one sharing its secret) issued the token. */
export function verifyToken(secret: Buffer, token: string): boolean {
  if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return false;
  const raw = Buffer.from(token, 'base64url');
  return raw.length === NONCE + MAC && timingSafeEqual(raw.subarray(NONCE), mac(secret, raw.subarray(0, NONCE)));
}

export interface CsrfState {
  /** The token pages and API responses carry. */
  token: string;
  /** Set-Cookie for a new token, or null when the request's cookie already holds a valid one. */
  setCookie: string | null;
  /** Every valid token the request's cookies hold (a shadowing cookie with a longer Path comes first). */
  cookieTokens: string[];
}

/** The request's valid cookie token, or a new one to set. */
export function csrfState(headers: IncomingHttpHeaders, secret: Buffer, base: string, secure: boolean): CsrfState {
  const name = cookieName(secure);
  const cookieTokens = readCookies(headers.cookie, name).filter((v) => verifyToken(secret, v));
  if (cookieTokens.length) return { token: cookieTokens[0], setCookie: null, cookieTokens };
  const token = signToken(secret);
  const attrs = [`${name}=${token}`, `Path=${secure ? '/' : base || '/'}`, 'HttpOnly', 'SameSite=Lax'];
  if (secure) attrs.push('Secure');
  return { token, setCookie: attrs.join('; '), cookieTokens };
}

/** Whether a state-changing request repeats one of its cookie's valid tokens (header first, then the form field). */
export function csrfValid(headers: IncomingHttpHeaders, body: BodyFields, cookieTokens: string[]): boolean {
  const header = headers[CSRF_HEADER];
  const field = body[CSRF_FIELD];
  const sent = typeof header === 'string' ? header : typeof field === 'string' ? field : null;
  if (!sent) return false;
  const a = Buffer.from(sent);
  return cookieTokens.some((t) => {
    const b = Buffer.from(t);
    return a.length === b.length && timingSafeEqual(a, b);
  });
}

/**
 * Why a state change is refused by what the browser says of its origin, or null. Sec-Fetch-Site,
 * which browsers compute themselves, decides when present: same-origin, or none (typed or
 * bookmarked by the user). Browsers without it are held to their Origin, which must name this host
 * (Host or X-Forwarded-Host; the scheme is not compared, as behind a TLS-terminating proxy the app
 * sees http, but an http Origin is refused when we know the request is https). Clients that send
 * neither (curl, scripts) are left to the token.
 */
export function crossOriginReason(headers: IncomingHttpHeaders, secure: boolean): string | null {
  const site = headers['sec-fetch-site'];
  if (site !== undefined) return site === 'same-origin' || site === 'none' ? null : `Sec-Fetch-Site is ${JSON.stringify(String(site).slice(0, 20))}, not same-origin`;
  const origin = headers.origin;
  if (origin === undefined) return null;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return 'the Origin header is not an origin';
  }
  if (url.protocol !== 'https:' && (secure || url.protocol !== 'http:')) return 'the Origin is not this site';
  const own = [headers.host, firstValue(headers['x-forwarded-host'])].map((h) => h?.toLowerCase().replace(url.protocol === 'https:' ? /:443$/ : /:80$/, ''));
  return own.includes(url.host) ? null : 'the Origin is not this site';
}

/**
 * Fetch metadata on every request: a cross-site page may link to the admin (a top-level GET
 * navigation) but not fetch, embed or post to it.
 */
export function crossSiteFetch(method: string, headers: IncomingHttpHeaders): boolean {
  if (headers['sec-fetch-site'] !== 'cross-site') return false;
  const navigation = headers['sec-fetch-mode'] === 'navigate' && headers['sec-fetch-dest'] === 'document';
  return !(navigation && (method === 'GET' || method === 'HEAD'));
}

/** The first of a comma-separated header's values (X-Forwarded-Proto: "https,http" → "https"). */
export function firstValue(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  return s?.split(',')[0].trim() || undefined;
}

/** Every value a Cookie header holds for a name, in order. */
export function readCookies(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const out: string[] = [];
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim());
  }
  return out;
}
