/** The jobs admin: an operator's dashboard and JSON API, mounted in an Express or Koa app. */
export { jobsAdmin } from './express.ts';
export type { ExpressLikeRequest } from './express.ts';
export { koaJobsAdmin } from './koa.ts';
export type { KoaAdminOptions, KoaLikeAdminContext } from './koa.ts';
export type { AdminAccess, AdminOptions, MetricsAccess } from './types.ts';
export type { AdminJobs } from './actions.ts';
