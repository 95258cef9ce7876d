/**
 * Koa 2 and 3: `app.use(koaJobsAdmin(jobs, { path: '/admin/jobs', ...options }))` answers below
 * that path and passes everything else on; under koa-mount, leave `path` out
 * (`app.use(mount('/admin/jobs', koaJobsAdmin(jobs)))`): links then use ctx.mountPath.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AdminOptions, AdminRequest } from './types.ts';
import type { AdminJobs } from './actions.ts';
import { handleAdmin, settingsFrom } from './router.ts';
import { isEncrypted, originalPath, requestBody, stripCors } from './node.ts';

/** The Koa context the admin reads and writes. */
export interface KoaLikeAdminContext {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  /** The URL as the client sent it, before any mount stripped a prefix. */
  originalUrl?: string;
  querystring: string;
  method: string;
  mountPath?: string;
  /** Koa's request; its `body`, when a body parser set one, is read. */
  request: object;
  /** Koa's per-request state (what authentication middleware sets, e.g. `ctx.state.user`). */
  state: Record<string, unknown>;
  status: number;
  body: unknown;
  set(field: string, value: string | string[]): void;
}

export interface KoaAdminOptions<Ctx> extends AdminOptions<Ctx> {
  /** Where the admin answers, e.g. '/admin/jobs'. Default '/' (everything: use under koa-mount). */
  path?: string;
}

export function koaJobsAdmin<Ctx extends KoaLikeAdminContext = KoaLikeAdminContext>(jobs: AdminJobs, options: KoaAdminOptions<Ctx> = {}) {
  const settings = settingsFrom(options);
  const prefix = (options.path ?? '/').replace(/\/$/, '');
  if (prefix && !/^\/[A-Za-z0-9_\-./]*$/.test(prefix)) throw new TypeError(`koaJobsAdmin: path must start with / and hold only letters, digits, _ - . /; got ${JSON.stringify(options.path)}`);
  return async function sqljobsAdmin(ctx: Ctx, next: () => Promise<unknown>): Promise<void> {
    if (prefix && ctx.path !== prefix && !ctx.path.startsWith(`${prefix}/`)) return void (await next());
    const request: AdminRequest = {
      method: ctx.method,
      path: ctx.path.slice(prefix.length) || '/',
      originalPath: originalPath(ctx.originalUrl ?? ctx.req.url),
      query: new URLSearchParams(ctx.querystring),
      headers: ctx.req.headers,
      base: `${(ctx.mountPath ?? '').replace(/\/$/, '')}${prefix}`,
      remoteAddress: ctx.req.socket.remoteAddress,
      encrypted: isEncrypted(ctx.req),
      readBody: () => requestBody(ctx.req, (ctx.request as { body?: unknown }).body),
    };
    const out = await handleAdmin(jobs, options, settings, request, ctx);
    stripCors(ctx.res);
    ctx.status = out.status;
    for (const [k, v] of Object.entries(out.headers)) ctx.set(k, v);
    ctx.body = out.body;
  };
}
