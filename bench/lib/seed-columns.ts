/**
 * Column expressions over a row number `i` (and `ts`, its time in epoch ms) for seeding finished
 * and pending jobs set-based, shared by the admin and history benchmarks. 20 names (and one rare
 * one), 5 queues, 10 % tagged (1,000 tags), 5 % in batches (5,000), 10 % with a refId; 90 %
 * completed, 8 % failed, 1.5 % cancelled, 0.5 % skipped.
 */
export const SEED_COLS = {
  name: `CASE WHEN i % 10000 = 7 THEN 'rare-report' ELSE 'job-' || (i % 20) END`,
  queue: `'q' || (i % 5)`,
  tag: `CASE WHEN i % 10 = 0 THEN 'tag-' || (i % 1000) END`,
  batch: `CASE WHEN i % 20 = 1 THEN 'batch-' || (i % 5000) END`,
  ref: (p: string) => `CASE WHEN i % 10 = 2 THEN '${p}' || i END`,
  state: `CASE WHEN i % 200 < 180 THEN 'completed' WHEN i % 200 < 196 THEN 'failed' WHEN i % 200 < 199 THEN 'cancelled' ELSE 'skipped' END`,
};

/** A UUIDv7-shaped PostgreSQL uuid from `ts` and `i` (time-ordered like the library's ids); `variant` one hex digit, 8 to b. */
export const pgSeedId = (variant: string) =>
  `(lpad(to_hex(ts), 12, '0') || '7' || lpad(to_hex(i % 4096), 3, '0') || '${variant}' || lpad(to_hex((i / 4096) % 4096), 3, '0') || lpad(to_hex(i), 12, '0'))::uuid`;
