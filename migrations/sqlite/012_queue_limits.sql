-- Fair groups and queue limits (issue 14): see migrations/postgres/012_queue_limits.sql.
CREATE TABLE {{prefix}}queues (
  queue TEXT PRIMARY KEY,
  concurrency INTEGER,
  group_concurrency INTEGER,
  rate_limit INTEGER,
  rate_interval_ms INTEGER,
  rate_per TEXT,
  vtime INTEGER NOT NULL DEFAULT 0,
  code_hash TEXT,
  updated_at INTEGER NOT NULL
);

CREATE TABLE {{prefix}}queue_groups (
  queue TEXT NOT NULL,
  group_key TEXT NOT NULL,
  last_rank INTEGER NOT NULL DEFAULT 0,
  touched_at INTEGER NOT NULL,
  PRIMARY KEY (queue, group_key)
);

CREATE TABLE {{prefix}}starts (
  queue TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  job_id TEXT NOT NULL,
  group_key TEXT,
  PRIMARY KEY (queue, started_at, job_id)
);

ALTER TABLE {{prefix}}jobs ADD COLUMN group_key TEXT;
ALTER TABLE {{prefix}}jobs ADD COLUMN fair_rank INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}history ADD COLUMN group_key TEXT;
-- The per-queue index (was queue, state, run_at) now also gives a managed queue's claim order
-- (priority, then fair rank, then run time, then rowid, which ends every SQLite index): one index
-- as before, so a job in a plain queue pays for nothing more (the text id would have widened every
-- entry). It still serves the per-queue counts and a queue's running count.
DROP INDEX {{prefix}}jobs_queue;
CREATE INDEX {{prefix}}jobs_queue ON {{prefix}}jobs (queue, state, priority DESC, fair_rank, run_at);
