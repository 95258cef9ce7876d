-- Fair groups and queue limits (issue 14): see migrations/postgres/012_queue_limits.sql. (No
-- partial indexes: state leads instead.)
CREATE TABLE {{prefix}}queues (
  queue VARCHAR(200) NOT NULL PRIMARY KEY,
  concurrency INT,
  group_concurrency INT,
  rate_limit INT,
  rate_interval_ms INT,
  rate_per VARCHAR(10),
  vtime BIGINT NOT NULL DEFAULT 0,
  code_hash VARCHAR(64),
  updated_at DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE {{prefix}}queue_groups (
  queue VARCHAR(200) NOT NULL,
  group_key VARCHAR(200) NOT NULL,
  last_rank BIGINT NOT NULL DEFAULT 0,
  touched_at DATETIME(3) NOT NULL,
  PRIMARY KEY (queue, group_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE {{prefix}}starts (
  queue VARCHAR(200) NOT NULL,
  started_at DATETIME(3) NOT NULL,
  job_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  group_key VARCHAR(200),
  PRIMARY KEY (queue, started_at, job_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE {{prefix}}jobs ADD COLUMN group_key VARCHAR(200);
ALTER TABLE {{prefix}}jobs ADD COLUMN fair_rank BIGINT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}history ADD COLUMN group_key VARCHAR(200);
-- The per-queue index (was queue, state, run_at) now also gives a managed queue's claim order
-- (priority, then fair rank, then run time): one index as before, so a job in a plain queue pays
-- for nothing more. It still serves the per-queue counts and a queue's running count.
DROP INDEX {{prefix}}jobs_queue ON {{prefix}}jobs;
CREATE INDEX {{prefix}}jobs_queue ON {{prefix}}jobs (queue, state, priority DESC, fair_rank, run_at, id);
