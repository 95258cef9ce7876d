/**
 * Express 4/5 adapter: `app.use(jobsMiddleware(jobsOrDb))` puts `req.jobs` on every request,
 * bound to the request's unit of work.
 *
 * The commit gate: the first time the response is about to go out (writeHead, write, end,
 * flushHeaders — res.send, res.json, res.redirect and streams all end up there) the gate holds
 * that call, commits when the handler succeeded (status < 400 by default) or rolls back
 * otherwise, and then lets the response through. A failed commit turns it into a 500: the client
 * never sees a 2xx for work that did not commit. A client that disconnects first rolls back.
 */
import type { TransactionHandle } from '../driver/orm/types.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Jobs, JobMap, SupportedDb } from '../jobs.ts';
import { checkMiddlewareOptions, RequestJobs, resolveJobs, type RequestJobMap } from './unit-of-work.ts';
import { installGate } from './gate.ts';

export interface JobsMiddlewareOptions<Req = IncomingMessage, Res = ServerResponse> {
  /** Commit when this returns true at the commit point. Default: status < 400. */
  commitWhen?: (req: Req, res: Res) => boolean;
  /** Use the app's own per-request transaction (e.g. `(req) => req.trx`); the app commits it. */
  transaction?: (req: Req) => TransactionHandle | null | undefined;
  /** Called when a commit failed and the response became a 500 (for logging). */
  onCommitError?: (err: unknown, req: Req) => void;
  /**
   * The request's user (e.g. `(req) => req.user?.id`): every job enqueued through `req.jobs` gets
   * it as `userId` and `createdBy`, unless the call sets them. Asked at the first enqueue.
   */
  userId?: (req: Req) => string | null | undefined;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** sqljobs: enqueue within this request's unit of work (typed by the augmentable RequestJobMap). */
      jobs: RequestJobs<RequestJobMap>;
    }
  }
}

/**
 * The request the options' functions are given: by default Express's (`Express.Request`, with
 * whatever the app or its auth library declares on it, such as `user`); a function whose
 * parameter is annotated (`(req: express.Request) => …`) sets it.
 */
export type ExpressRequestLike = IncomingMessage & Express.Request;

export function jobsMiddleware<M extends JobMap = {}, Req extends IncomingMessage = ExpressRequestLike>(
  jobsOrDb: Jobs<M> | SupportedDb,
  options: JobsMiddlewareOptions<Req> = {},
) {
  checkMiddlewareOptions('jobsMiddleware', options, ['commitWhen', 'transaction', 'onCommitError', 'userId']);
  const jobs = resolveJobs(jobsOrDb as unknown as Jobs) as unknown as Jobs<M>;
  const commitWhen = options.commitWhen ?? ((_req: Req, res: ServerResponse) => res.statusCode < 400);
  return function sqljobs(incoming: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
    // Express hands every middleware its request: the type the app's options were written for.
    const req = incoming as Req;
    const uow: RequestJobs<M> = new RequestJobs(
      jobs,
      { transaction: options.transaction && (() => options.transaction!(req)), userId: options.userId && (() => options.userId!(req)) },
      () => installGate(incoming, res, uow, () => commitWhen(req, res), options.onCommitError ? (err) => options.onCommitError!(err, req) : (err) => uow.jobs.reportError(err, "a request's jobs were not committed")),
      () => res.headersSent || res.writableEnded,
    );
    (incoming as IncomingMessage & { jobs: unknown }).jobs = uow;
    next();
  };
}
