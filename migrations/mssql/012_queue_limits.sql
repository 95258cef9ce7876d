-- Fair groups and queue limits (issue 14): see migrations/postgres/012_queue_limits.sql.
CREATE TABLE {{prefix}}queues (
  queue NVARCHAR(200) NOT NULL PRIMARY KEY,
  concurrency INT,
  group_concurrency INT,
  rate_limit INT,
  rate_interval_ms INT,
  rate_per NVARCHAR(10),
  vtime BIGINT NOT NULL DEFAULT 0,
  code_hash NVARCHAR(64),
  updated_at DATETIME2(3) NOT NULL
);

CREATE TABLE {{prefix}}queue_groups (
  queue NVARCHAR(200) NOT NULL,
  group_key NVARCHAR(200) NOT NULL,
  last_rank BIGINT NOT NULL DEFAULT 0,
  touched_at DATETIME2(3) NOT NULL,
  PRIMARY KEY (queue, group_key)
);

CREATE TABLE {{prefix}}starts (
  queue NVARCHAR(200) NOT NULL,
  started_at DATETIME2(3) NOT NULL,
  job_id CHAR(36) COLLATE Latin1_General_BIN2 NOT NULL,
  group_key NVARCHAR(200),
  PRIMARY KEY (queue, started_at, job_id)
);

ALTER TABLE {{prefix}}jobs ADD group_key NVARCHAR(200);
ALTER TABLE {{prefix}}jobs ADD fair_rank BIGINT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}history ADD group_key NVARCHAR(200);
-- The per-queue index (was queue, state, run_at) now also gives a managed queue's claim order
-- (priority, then fair rank, then run time): one index as before, so a job in a plain queue pays
-- for nothing more. It still serves the per-queue counts and a queue's running count.
DROP INDEX {{prefix}}jobs_queue ON {{prefix}}jobs;
CREATE INDEX {{prefix}}jobs_queue ON {{prefix}}jobs (queue, state, priority DESC, fair_rank, run_at, id);
