/**
 * Express 4 and 5: `app.use('/admin/jobs', jobsAdmin(jobs, options))`. A plain middleware on
 * Node's request and response: it sets no view engine and touches none of the host's settings.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AdminOptions, AdminRequest } from './types.ts';
import type { AdminJobs } from './actions.ts';
import { handleAdmin, settingsFrom } from './router.ts';
import { isEncrypted, originalPath, requestBody, splitUrl, stripCors } from './node.ts';

/** The request Express hands a middleware (only what the admin reads). */
export type ExpressLikeRequest = IncomingMessage & { baseUrl?: string; originalUrl?: string; body?: unknown };

export function jobsAdmin<Req extends ExpressLikeRequest = ExpressLikeRequest>(jobs: AdminJobs, options: AdminOptions<Req> = {}) {
  const settings = settingsFrom(options);
  return function sqljobsAdmin(req: Req, res: ServerResponse, next: (err?: unknown) => void): void {
    // req.url below the mount point, exactly as Express routed it.
    const { path, query } = splitUrl(req.url);
    const request: AdminRequest = {
      method: req.method ?? 'GET',
      path,
      originalPath: originalPath(req.originalUrl ?? req.url),
      query,
      headers: req.headers,
      base: (req.baseUrl ?? '').replace(/\/$/, ''),
      remoteAddress: req.socket.remoteAddress,
      encrypted: isEncrypted(req),
      readBody: () => requestBody(req, req.body),
    };
    handleAdmin(jobs, options, settings, request, req).then((out) => {
      stripCors(res);
      res.statusCode = out.status;
      for (const [k, v] of Object.entries(out.headers)) res.setHeader(k, v);
      res.end(request.method === 'HEAD' ? undefined : out.body);
    }, next);
  };
}
