/**
 * Express 4 and 5: `app.use('/admin/jobs', jobsAdmin(jobs, options))`. A plain middleware on
 * Node's request and response: it sets no view engine and touches none of the host's settings.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AdminOptions, AdminRequest } from './types.ts';
import type { AdminJobs } from './actions.ts';
import { handleAdmin, settingsFrom } from './router.ts';
import { fromParsed, readBody } from './body.ts';

/** The request Express hands a middleware (only what the admin reads). */
export type ExpressLikeRequest = IncomingMessage & { baseUrl?: string; body?: unknown };

export function jobsAdmin<Req extends ExpressLikeRequest = ExpressLikeRequest>(jobs: AdminJobs, options: AdminOptions<Req> = {}) {
  const settings = settingsFrom(options);
  return function sqljobsAdmin(req: Req, res: ServerResponse, next: (err?: unknown) => void): void {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const request: AdminRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      base: (req.baseUrl ?? '').replace(/\/$/, ''),
      remoteAddress: req.socket.remoteAddress,
      readBody: async () => fromParsed(req.body) ?? readBody(req),
    };
    handleAdmin(jobs, options, settings, request, req).then((out) => {
      res.statusCode = out.status;
      for (const [k, v] of Object.entries(out.headers)) res.setHeader(k, v);
      res.end(request.method === 'HEAD' ? undefined : out.body);
    }, next);
  };
}
