/**
 * The admin's request pipeline, independent of Express and Koa: static files, access, CSRF,
 * route dispatch, errors, and the security headers every answer carries.
 */
import type { AdminAccess, AdminOptions, AdminRequest, AdminResponse, BodyFields } from './types.ts';
import { HttpError } from './types.ts';
import { resolveAccess } from './access.ts';
import { CSRF_COOKIE, csrfToken, csrfValid, readCookie } from './csrf.ts';
import { findStatic, render } from './render.ts';
import type { AdminJobs } from './actions.ts';
import { pageRoutes } from './pages.ts';
import { apiRoutes } from './api.ts';
import { html, json } from './respond.ts';

export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export interface Settings {
  bulkCap: number;
  countCap: number;
  title: string;
}

export interface RouteContext {
  req: AdminRequest;
  params: string[];
  body: BodyFields;
  jobs: AdminJobs;
  access: 'manage' | 'view';
  csrf: string;
  settings: Settings;
}

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  pattern: RegExp;
  handler: (c: RouteContext) => Promise<AdminResponse>;
}

const ROUTES: Route[] = [...apiRoutes, ...pageRoutes];

export function settingsFrom<Req>(opts: AdminOptions<Req>): Settings {
  const cap = (v: unknown, field: string, dflt: number, max: number): number => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) throw new TypeError(`jobsAdmin: ${field} must be an integer from 1 to ${max}; got ${String(v)}`);
    return v;
  };
  for (const k of Object.keys(opts)) {
    if (!['authorize', 'bulkCap', 'countCap', 'title', 'path'].includes(k)) throw new TypeError(`jobsAdmin: unknown option "${k}"; allowed: authorize, bulkCap, countCap, title (and path for Koa)`);
  }
  if (opts.authorize !== undefined && typeof opts.authorize !== 'function') throw new TypeError('jobsAdmin: authorize must be a function (req) => "manage" | "view" | false');
  if (opts.title !== undefined && (typeof opts.title !== 'string' || opts.title.length > 100)) throw new TypeError('jobsAdmin: title must be a string of at most 100 characters');
  return { bulkCap: cap(opts.bulkCap, 'bulkCap', 1000, 10_000), countCap: cap(opts.countCap, 'countCap', 10_000, 10_000_000), title: opts.title ?? 'sqljobs' };
}

/** Answer one request under the mount point. `raw` is what authorize receives (the framework's request or context). */
export async function handleAdmin<Req>(jobs: AdminJobs, opts: AdminOptions<Req>, settings: Settings, req: AdminRequest, raw: Req): Promise<AdminResponse> {
  const isApi = req.path === '/api' || req.path.startsWith('/api/');
  try {
    const access: AdminAccess = await resolveAccess(opts, raw, req.remoteAddress);
    if (!access) throw new HttpError(403, 'forbidden: the jobs admin is served to loopback clients only unless an authorize option allows this request');
    const file = req.method === 'GET' || req.method === 'HEAD' ? findStatic(req.path) : null;
    if (file) return secure({ status: 200, headers: { 'content-type': file.type, 'cache-control': 'public, max-age=31536000, immutable' }, body: file.body }, false);
    const secureCookie = (req.headers['x-forwarded-proto'] ?? '') === 'https';
    const { token, setCookie } = csrfToken(req.headers, req.base, secureCookie);
    const res = await dispatch(jobs, settings, req, access, token, readCookie(req.headers.cookie, CSRF_COOKIE) === token);
    if (setCookie) res.headers['set-cookie'] = setCookie;
    if (isApi) res.headers['x-csrf-token'] = token;
    return secure(res, true);
  } catch (err) {
    return secure(await errorResponse(err, isApi, req.base, settings), true);
  }
}

async function dispatch(jobs: AdminJobs, settings: Settings, req: AdminRequest, access: 'manage' | 'view', csrf: string, cookieSent: boolean): Promise<AdminResponse> {
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  let pathMatched = false;
  for (const route of ROUTES) {
    const m = route.pattern.exec(req.path);
    if (!m) continue;
    pathMatched = true;
    if (route.method !== method) continue;
    const params = m.slice(1).map((p) => safeDecode(p));
    let body: BodyFields = {};
    if (method !== 'GET') {
      body = await req.readBody();
      if (access !== 'manage') throw new HttpError(403, 'forbidden: read-only access (view) cannot change jobs, queues or schedules');
      if (!csrfValid(req.headers, body, csrf, cookieSent)) throw new HttpError(403, 'forbidden: missing or wrong CSRF token (send the X-CSRF-Token header or the _csrf field with the sqljobs_csrf cookie)');
    }
    return route.handler({ req, params, body, jobs, access, csrf, settings });
  }
  if (pathMatched) throw new HttpError(405, `method ${req.method} not allowed here`);
  throw new HttpError(404, `not found: ${req.path.slice(0, 200)}`);
}

function safeDecode(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the path');
  }
}

async function errorResponse(err: unknown, isApi: boolean, base: string, settings: Settings): Promise<AdminResponse> {
  const status = err instanceof HttpError ? err.status : 500;
  const message = err instanceof HttpError ? err.message : `internal error: ${err instanceof Error ? err.message : String(err)}`;
  if (isApi) return json(status, { error: message });
  return html(status, await render('error', { base, title: settings.title, status, message }));
}

/** The headers every answer carries; pages are never cached. */
function secure(res: AdminResponse, noStore: boolean): AdminResponse {
  res.headers['content-security-policy'] = CSP;
  res.headers['x-content-type-options'] = 'nosniff';
  res.headers['x-frame-options'] = 'DENY';
  res.headers['referrer-policy'] = 'same-origin';
  if (noStore) res.headers['cache-control'] = 'no-store';
  return res;
}

