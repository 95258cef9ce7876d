/** The demo's jobs: the shop jobs every example shares, on the demo's SQLite database. */
import type Database from 'better-sqlite3';
import { setupShopJobs } from '../shared/shop-jobs.ts';

export { orderTag } from '../shared/shop-jobs.ts';
export type { OrderCompleteResult, OrderPayload, ShopJobs } from '../shared/shop-jobs.ts';

export function setupJobs(db: Database.Database) {
  return setupShopJobs(db);
}

export type ShopJobsInstance = ReturnType<typeof setupJobs>;
