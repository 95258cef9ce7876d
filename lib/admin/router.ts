/**
 * The admin's request pipeline, independent of Express and Koa: static files, access, CSRF,
 * route dispatch, errors, and the security headers every answer carries.
 */
import { randomBytes } from 'node:crypto';
import type { AdminOptions, AdminRequest, AdminResponse, BodyFields } from './types.ts';
import { HttpError } from './types.ts';
import { resolveAccess } from './access.ts';
import { METRICS_PATH, serveMetrics } from './metrics.ts';
import { crossOriginReason, crossSiteFetch, csrfState, csrfValid, firstValue } from './csrf.ts';
import { findStatic, render, staticUrl } from './render.ts';
import type { AdminJobs } from './actions.ts';
import type { Route, Settings } from './route.ts';
import { pageRoutes } from './pages.ts';
import { callApp } from '../report.ts';
import { apiRoutes } from './api.ts';
import { html, json } from './respond.ts';

export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";


/** One key per process, shared by every admin it mounts (a cookie with Path=/ serves them all). */
const PROCESS_SECRET = randomBytes(32);
const OPTIONS = ['authorize', 'metricsAuthorize', 'bulkCap', 'countCap', 'title', 'allowedHosts', 'secret', 'onError', 'path'];

const logError: Settings['onError'] = (err, info) => console.error(`sqljobs admin: internal error ${info.id} on ${info.method} ${info.path}:`, err);

const ROUTES: Route[] = [...apiRoutes, ...pageRoutes];

export function settingsFrom<Req>(opts: AdminOptions<Req>): Settings {
  const cap = (v: unknown, field: string, dflt: number, max: number): number => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) throw new TypeError(`jobsAdmin: ${field} must be an integer from 1 to ${max}; got ${String(v)}`);
    return v;
  };
  for (const k of Object.keys(opts)) {
    if (!OPTIONS.includes(k)) throw new TypeError(`jobsAdmin: unknown option "${k}"; allowed: ${OPTIONS.slice(0, -1).join(', ')} (and path for Koa)`);
  }
  if (opts.authorize !== undefined && typeof opts.authorize !== 'function') throw new TypeError('jobsAdmin: authorize must be a function (req) => "manage" | "view" | false');
  if (opts.metricsAuthorize !== undefined && typeof opts.metricsAuthorize !== 'function') throw new TypeError('jobsAdmin: metricsAuthorize must be a function (req) => true | "view" | "manage" | false (or a promise of one)');
  if (opts.title !== undefined && (typeof opts.title !== 'string' || opts.title.length > 100)) throw new TypeError('jobsAdmin: title must be a string of at most 100 characters');
  if (opts.secret !== undefined && (typeof opts.secret !== 'string' || opts.secret.length < 32)) throw new TypeError('jobsAdmin: secret must be a string of at least 32 characters (the same on every instance behind one load balancer)');
  if (opts.onError !== undefined && typeof opts.onError !== 'function') throw new TypeError('jobsAdmin: onError must be a function (err, { id, method, path }) => void');
  return {
    bulkCap: cap(opts.bulkCap, 'bulkCap', 1000, 10_000),
    countCap: cap(opts.countCap, 'countCap', 10_000, 10_000_000),
    title: opts.title ?? 'sqljobs',
    allowedHosts: new Set(hostList(opts.allowedHosts)),
    secret: opts.secret === undefined ? PROCESS_SECRET : Buffer.from(opts.secret),
    onError: opts.onError ?? logError,
  };
}

function hostList(v: unknown): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((h) => typeof h === 'string' && /^[a-z0-9.-]{1,253}$/i.test(h))) {
    throw new TypeError(`jobsAdmin: allowedHosts must be an array of host names without port, e.g. ['myapp.test']; got ${JSON.stringify(v)}`);
  }
  return v.map((h: string) => h.toLowerCase());
}

/** Answer one request under the mount point. `raw` is what authorize receives (the framework's request or context). */
export async function handleAdmin<Req>(jobs: AdminJobs, opts: AdminOptions<Req>, settings: Settings, req: AdminRequest, raw: Req): Promise<AdminResponse> {
  const isApi = req.path === '/api' || req.path.startsWith('/api/') || req.path === METRICS_PATH;
  try {
    if (crossSiteFetch(req.method, req.headers)) throw new HttpError(403, 'forbidden: a cross-site page may link to the jobs admin, not fetch, embed or post to it');
    // Before anything is served, metrics too: Express 4 routes /admin/jobs//metrics here as /metrics, past a host's gate on /admin/jobs/metrics.
    checkPath(req.originalPath);
    checkPath(req.path);
    // Read by scrapers, which keep no session: its own access rule, no CSRF cookie.
    if (req.path === METRICS_PATH) return secure(await serveMetrics(jobs, opts, settings, req, raw), true);
    const access = await resolveAccess(opts, settings.allowedHosts, req, raw);
    const file = req.method === 'GET' || req.method === 'HEAD' ? findStatic(req.path) : null;
    if (file) return secure({ status: 200, headers: { 'content-type': file.type, 'cache-control': 'public, max-age=31536000, immutable' }, body: file.body }, false);
    const https = req.encrypted || firstValue(req.headers['x-forwarded-proto'])?.toLowerCase() === 'https';
    const csrf = csrfState(req.headers, settings.secret, req.base, https);
    const res = await dispatch(jobs, settings, req, access, csrf.token, (body) => {
      const why = crossOriginReason(req.headers, https);
      if (why) throw new HttpError(403, `forbidden: ${why}`);
      if (!csrfValid(req.headers, body, csrf.cookieTokens)) throw new HttpError(403, 'forbidden: missing or wrong CSRF token (send the X-CSRF-Token header or the _csrf field with the CSRF cookie the pages set)');
    });
    if (csrf.setCookie) res.headers['set-cookie'] = csrf.setCookie;
    if (isApi) res.headers['x-csrf-token'] = csrf.token;
    return secure(res, true);
  } catch (err) {
    return secure(await errorResponse(err, isApi, req, settings), true);
  }
}

/**
 * An empty or dot segment, literal or percent-encoded, lets a framework, a URL parser or a browser
 * reach another route than the one a host's own gate on a sub-path saw (Express 4 routes
 * `/admin/jobs//api` as `/api`), so such paths are not served: neither the path below the mount
 * nor the whole one the client sent (a parent router can strip a slash above the mount too).
 */
function checkPath(p: string): void {
  if (/\/\/|\/(?:\.|%2e){1,2}(?:\/|$)/i.test(p)) throw new HttpError(404, 'not found: the path holds an empty, . or .. segment');
}

async function dispatch(
  jobs: AdminJobs, settings: Settings, req: AdminRequest, access: 'manage' | 'view', csrf: string, checkCsrf: (body: BodyFields) => void,
): Promise<AdminResponse> {
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
      checkCsrf(body);
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

/**
 * An HttpError's message is for the client. Anything else (authorize or the database threw) may
 * hold hosts, credentials or SQL, and may reach a client that was never granted access: the
 * client gets an id only, the details go to onError.
 */
async function errorResponse(err: unknown, isApi: boolean, req: AdminRequest, settings: Settings): Promise<AdminResponse> {
  let status = 500;
  let message: string;
  if (err instanceof HttpError) {
    status = err.status;
    message = err.message;
  } else {
    const id = randomBytes(6).toString('hex');
    // A failing logger (a throw, a rejection) must not turn the answer into the framework's error page (which may show details), nor end the process.
    callApp(() => settings.onError(err, { id, method: req.method, path: req.path.slice(0, 200) }));
    message = `internal error (id ${id})`;
  }
  if (isApi) return json(status, { error: message });
  return html(status, await render('error', { base: req.base, title: settings.title, status, message, icon: staticUrl(req.base, 'favicon.svg') }));
}

/** The headers every answer carries; pages are never cached, and no other origin may load them. */
function secure(res: AdminResponse, noStore: boolean): AdminResponse {
  res.headers['content-security-policy'] = CSP;
  res.headers['x-content-type-options'] = 'nosniff';
  res.headers['x-frame-options'] = 'DENY';
  res.headers['referrer-policy'] = 'same-origin';
  res.headers['cross-origin-resource-policy'] = 'same-origin';
  if (noStore) res.headers['cache-control'] = 'no-store';
  return res;
}
