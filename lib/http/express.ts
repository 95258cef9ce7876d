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
import { checkMiddlewareOptions, clientGone, RequestJobs, resolveJobs, type RequestJobMap } from './unit-of-work.ts';
import { callApp } from '../report.ts';

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

type Gated = 'writeHead' | 'write' | 'end' | 'flushHeaders';
const GATED: Gated[] = ['writeHead', 'write', 'end', 'flushHeaders'];

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

function installGate(
  req: IncomingMessage,
  res: ServerResponse,
  uow: { commit(): Promise<void>; rollback(): Promise<void> },
  shouldCommit: () => boolean,
  onCommitError?: (err: unknown) => void,
): void {
  const original = new Map<Gated, (...args: unknown[]) => unknown>();
  for (const name of GATED) original.set(name, (res as unknown as Record<Gated, (...a: unknown[]) => unknown>)[name]);
  const held: [Gated, unknown[]][] = [];
  let state: 'open' | 'settling' | 'done' = 'open';

  const restore = () => {
    for (const [name, fn] of original) (res as unknown as Record<string, unknown>)[name] = fn;
  };
  const settle = async () => {
    let failed: unknown = null;
    try {
      // commitWhen is the app's code: if it throws, nothing is committed and the answer is a 500.
      if (shouldCommit()) await uow.commit();
      else await uow.rollback();
    } catch (err) {
      failed = err;
      await uow.rollback();
    }
    restore();
    state = 'done';
    // Heard also when the client has gone meanwhile: the jobs are lost all the same.
    // The app's error hook failing (a throw, a rejection) changes nothing: the client still gets its 500.
    if (failed && onCommitError) callApp(() => onCommitError(failed));
    if (res.destroyed) return;
    if (failed) {
      if (res.headersSent) return void res.destroy(failed as Error);
      for (const h of res.getHeaderNames()) res.removeHeader(h);
      res.statusCode = 500;
      res.setHeader('content-type', 'application/json; charset=utf-8');
      return void res.end(JSON.stringify({ error: 'the request could not be committed' }));
    }
    // The held calls are the app's own: one may throw now (an invalid status code or header).
    // Its connection is ended rather than left hanging, and nothing escapes the gate.
    try {
      for (const [name, args] of held) original.get(name)!.apply(res, args);
    } catch {
      res.destroy();
    }
  };

  for (const name of GATED) {
    (res as unknown as Record<string, unknown>)[name] = function gated(...args: unknown[]) {
      held.push([name, args]);
      if (state === 'open') {
        state = 'settling';
        settle().catch(() => res.destroy());
      }
      return name === 'write' ? true : res;
    };
  }
  // A client that went away before the response (also before this first use): roll back and release the connection.
  const onClose = () => {
    if (state === 'open') {
      state = 'done';
      restore();
      void uow.rollback();
    }
  };
  if (clientGone(res)) onClose();
  else res.once('close', onClose);
}
