-- sqljobs schema for MySQL 8 / MariaDB 10.6+ (InnoDB). {{prefix}} is the validated table prefix.
-- Times are DATETIME(3) in UTC, always written from UTC_TIMESTAMP(3) or as UTC text (never NOW(),
-- which follows the session time_zone). Ids are the library's UUIDv7 text: time-ordered, so the
-- clustered primary key appends. Binary collation: names, queues and refIds compare exactly, as
-- on the other databases.

-- Live jobs only (pending, running): finished jobs move to {{prefix}}history, so the claim
-- index stays small however much history accumulates.
CREATE TABLE {{prefix}}jobs (
  id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  name VARCHAR(200) NOT NULL,
  queue VARCHAR(200) NOT NULL,
  state VARCHAR(16) NOT NULL CHECK (state IN ('pending', 'running')),
  payload JSON,
  payload_bin LONGBLOB,
  priority INT NOT NULL DEFAULT 0,
  attempts INT NOT NULL DEFAULT 0,
  max_attempts INT NOT NULL,
  timeout_ms INT,
  backoff JSON,
  run_at DATETIME(3) NOT NULL,
  created_at DATETIME(3) NOT NULL,
  started_at DATETIME(3),
  ref_id VARCHAR(255),
  tag VARCHAR(255),
  batch_id VARCHAR(255),
  created_by VARCHAR(255),
  meta JSON,
  progress DOUBLE,
  progress_message TEXT,
  `checkpoint` JSON,
  error JSON,
  worker_id VARCHAR(255),
  token CHAR(36) CHARACTER SET ascii COLLATE ascii_bin
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Claim order: priority DESC, run_at, id (there are no partial indexes: state leads instead).
CREATE INDEX {{prefix}}jobs_claim ON {{prefix}}jobs (state, priority DESC, run_at, id);
-- refId is unique among live jobs (NULLs never collide).
CREATE UNIQUE INDEX {{prefix}}jobs_ref ON {{prefix}}jobs (ref_id);
CREATE INDEX {{prefix}}jobs_worker ON {{prefix}}jobs (worker_id, state);

CREATE TABLE {{prefix}}history (
  id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  name VARCHAR(200) NOT NULL,
  queue VARCHAR(200) NOT NULL,
  state VARCHAR(16) NOT NULL CHECK (state IN ('completed', 'failed', 'cancelled', 'skipped')),
  payload JSON,
  payload_bin LONGBLOB,
  priority INT NOT NULL,
  attempts INT NOT NULL,
  max_attempts INT NOT NULL,
  timeout_ms INT,
  backoff JSON,
  run_at DATETIME(3) NOT NULL,
  created_at DATETIME(3) NOT NULL,
  started_at DATETIME(3),
  finished_at DATETIME(3) NOT NULL,
  ref_id VARCHAR(255),
  tag VARCHAR(255),
  batch_id VARCHAR(255),
  created_by VARCHAR(255),
  meta JSON,
  progress DOUBLE,
  progress_message TEXT,
  `checkpoint` JSON,
  error JSON,
  result JSON,
  worker_id VARCHAR(255)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every history index is paid on every completion: retention, the state filter and the
-- selective filters (refId, tag, batch) only; name and queue filters walk (state, id).
CREATE INDEX {{prefix}}history_finished ON {{prefix}}history (finished_at);
CREATE INDEX {{prefix}}history_state ON {{prefix}}history (state, id);
CREATE INDEX {{prefix}}history_ref ON {{prefix}}history (ref_id);
CREATE INDEX {{prefix}}history_tag ON {{prefix}}history (tag, id);
CREATE INDEX {{prefix}}history_batch ON {{prefix}}history (batch_id, id);

-- One row per failed attempt (the last successful attempt is the job record itself).
CREATE TABLE {{prefix}}attempts (
  job_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  attempt INT NOT NULL,
  worker_id VARCHAR(255),
  started_at DATETIME(3),
  finished_at DATETIME(3) NOT NULL,
  error JSON,
  PRIMARY KEY (job_id, attempt)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE {{prefix}}logs (
  seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  job_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  attempt INT NOT NULL,
  at DATETIME(3) NOT NULL,
  message TEXT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX {{prefix}}logs_job ON {{prefix}}logs (job_id, seq);

CREATE TABLE {{prefix}}workers (
  id VARCHAR(255) NOT NULL PRIMARY KEY,
  host VARCHAR(255) NOT NULL,
  pid INT NOT NULL,
  queues JSON,
  names JSON NOT NULL,
  concurrency INT NOT NULL,
  started_at DATETIME(3) NOT NULL,
  heartbeat_at DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
