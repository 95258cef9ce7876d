/**
 * Koa 2/3 adapter: `app.use(koaJobs(jobsOrDb))` puts `ctx.jobs` (and `ctx.state.jobs`) on every
 * request, bound to the request's unit of work. Koa sends the response after the middleware
 * chain returns, so the commit point is right after `await next()`: commit when the downstream
 * succeeded (status < 400 by default), roll back when it threw or answered an error. A failed
 * commit throws, and Koa answers 500 instead of the handler's body.
 */
import type { TransactionHandle } from '../driver/orm/types.ts';
import type { Jobs, JobMap, SupportedDb } from '../jobs.ts';
import { checkMiddlewareOptions, clientGone, RequestJobs, resolveJobs, type RequestJobMap } from './unit-of-work.ts';

/** The parts of a Koa context this middleware uses (Koa 2 and 3). */
export interface KoaLikeContext {
  status: number;
  state: Record<string, unknown>;
  req: import('node:http').IncomingMessage;
  res: import('node:http').ServerResponse;
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
    let aborted = false;
    const onClose = () => {
      if (!ctx.res.writableFinished) {
        aborted = true;
        void uow.rollback();
      }
    };
    const uow = new RequestJobs<M>(
      jobs,
      { transaction: options.transaction && (() => options.transaction!(ctx)), userId: options.userId && (() => options.userId!(ctx)) },
      // The response's close, not the request's (which closes once its body was read). A client
      // gone before the first use closed it already: nothing will be committed.
      () => (clientGone(ctx.res) ? onClose() : ctx.res.once('close', onClose)),
    );
    ctx.jobs = uow as unknown as RequestJobs<RequestJobMap>;
    ctx.state.jobs = uow;
    try {
      await next();
    } catch (err) {
      await uow.rollback();
      throw err;
    } finally {
      ctx.res.off('close', onClose);
    }
    if (!uow.touched) return uow.seal();
    if (aborted) return uow.rollback();
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
