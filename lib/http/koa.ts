/**
 * Koa 2/3 adapter: `app.use(koaJobs(jobsOrDb))` puts `ctx.jobs` (and `ctx.state.jobs`) on every
 * request, bound to the request's unit of work. Koa sends the response after the middleware
 * chain returns, so the commit point is right after `await next()`: commit when the downstream
 * succeeded (status < 400 by default), roll back when it threw or answered an error. A failed
 * commit throws, and Koa answers 500 instead of the handler's body.
 */
import type { TransactionHandle } from '../driver/orm/types.ts';
import type { Jobs, JobMap, SupportedDb } from '../jobs.ts';
import { installGate } from './gate.ts';
import { checkMiddlewareOptions, RequestJobs, resolveJobs, type RequestJobMap } from './unit-of-work.ts';

/** The parts of a Koa context this middleware uses (Koa 2 and 3). */
export interface KoaLikeContext {
  status: number;
  state: Record<string, unknown>;
  req: import('node:http').IncomingMessage;
  res: import('node:http').ServerResponse;
  /** Koa's: false when the handler writes `res` itself. */
  respond?: boolean;
  /** Whatever the app's own context declares it as (RequestJobs of its job map): the middleware sets it. */
  jobs?: unknown;
}

export interface KoaJobsOptions<Ctx extends KoaLikeContext = KoaLikeContext> {
  /** Commit when this returns true after the downstream middleware. Default: status < 400. */
  commitWhen?: (ctx: Ctx) => boolean;
  /** Use the app's own per-request transaction; the app commits it. */
  transaction?: (ctx: Ctx) => TransactionHandle | null | undefined;
  /**
   * The request's user (e.g. `(ctx) => ctx.state.user?.id`): every job enqueued through `ctx.jobs`
   * gets it as `userId` and `createdBy`, unless the call sets them. Asked at the first enqueue.
   */
  userId?: (ctx: Ctx) => string | null | undefined;
}

export function koaJobs<M extends JobMap = {}, Ctx extends KoaLikeContext = KoaLikeContext>(
  jobsOrDb: Jobs<M> | SupportedDb,
  options: KoaJobsOptions<Ctx> = {},
) {
  checkMiddlewareOptions('koaJobs', options, ['commitWhen', 'transaction', 'userId']);
  const jobs = resolveJobs(jobsOrDb as unknown as Jobs) as unknown as Jobs<M>;
  const commitWhen = options.commitWhen ?? ((ctx: Ctx) => ctx.status < 400);
  return async function sqljobs(ctx: Ctx, next: () => Promise<unknown>): Promise<void> {
    // The raw response is gated as Express's is: a handler that writes it itself (ctx.respond =
    // false) commits before its first byte; a client gone (before the first use too) rolls back.
    // Otherwise the commit below comes first, and Koa's own writes pass the settled gate.
    const uow: RequestJobs<M> = new RequestJobs<M>(
      jobs,
      { transaction: options.transaction && (() => options.transaction!(ctx)), userId: options.userId && (() => options.userId!(ctx)) },
      () => installGate(ctx.req, ctx.res, uow, () => commitWhen(ctx), (err) => uow.jobs.reportError(err, "a request's jobs were not committed")),
      () => ctx.res.headersSent || ctx.res.writableEnded,
    );
    ctx.jobs = uow as unknown as RequestJobs<RequestJobMap>;
    ctx.state.jobs = uow;
    try {
      await next();
    } catch (err) {
      await uow.rollback();
      throw err;
    }
    if (!uow.touched) return uow.seal();
    // Settled, or settling, already: by the gate (the handler wrote the response itself, or the client went).
    if (uow.decided) return;
    // The handler answers by itself, later (a stream piped, a write in a callback): its first write decides.
    if (ctx.respond === false && !ctx.res.headersSent && !ctx.res.writableEnded) return;
    let commit: boolean;
    try {
      commit = commitWhen(ctx);
    } catch (err) {
      // commitWhen is the app's code: if it throws, nothing is committed and Koa answers with the error.
      await uow.rollback();
      throw err;
    }
    if (commit) await uow.commit();
    else await uow.rollback();
  };
}
