/**
 * CSRF protection by double-submit cookie: a random token in an HttpOnly, SameSite=Strict cookie
 * scoped to the mount path, repeated by every state change in the X-CSRF-Token header (HTMX and
 * API clients) or the _csrf form field (plain forms). A cross-site page can neither read the
 * cookie nor the token in our pages, so it cannot repeat it.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { BodyFields } from './types.ts';

export const CSRF_COOKIE = 'sqljobs_csrf';
export const CSRF_HEADER = 'x-csrf-token';
export const CSRF_FIELD = '_csrf';
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

/** The request's token from its cookie, or a new one to set (and the Set-Cookie header for it). */
export function csrfToken(headers: IncomingHttpHeaders, base: string, secure: boolean): { token: string; setCookie: string | null } {
  const existing = readCookie(headers.cookie, CSRF_COOKIE);
  if (existing && TOKEN_RE.test(existing)) return { token: existing, setCookie: null };
  const token = randomBytes(32).toString('base64url');
  const attrs = [`${CSRF_COOKIE}=${token}`, `Path=${base || '/'}`, 'HttpOnly', 'SameSite=Strict'];
  if (secure) attrs.push('Secure');
  return { token, setCookie: attrs.join('; ') };
}

/** Whether a state-changing request repeats the cookie's token (header first, then the form field). */
export function csrfValid(headers: IncomingHttpHeaders, body: BodyFields, cookieToken: string, cookieWasSent: boolean): boolean {
  if (!cookieWasSent) return false;
  const header = headers[CSRF_HEADER];
  const field = body[CSRF_FIELD];
  const sent = typeof header === 'string' ? header : typeof field === 'string' ? field : null;
  if (!sent) return false;
  const a = Buffer.from(sent);
  const b = Buffer.from(cookieToken);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function readCookie(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}
