-- sqljobs schema for SQL Server 2019+ and Azure SQL Database. {{prefix}} is the validated table prefix.
-- Not yet exercised against a live server (see README). Checked against the vendor documentation:
-- CREATE TABLE / filtered indexes (https://learn.microsoft.com/sql/t-sql/statements/create-index-transact-sql).
--
-- Ids and claim tokens are CHAR(36) with a binary collation, not UNIQUEIDENTIFIER: SQL Server
-- orders uniqueidentifier by its last byte group first, which would break the time order of
-- UUIDv7 ids that claim order and keyset pagination rely on. Times are UTC DATETIME2(3) from
-- SYSUTCDATETIME(). JSON is NVARCHAR(MAX). Reserved words used as column names ([checkpoint],
-- [key]) are delimited. Tables that an OUTPUT ... INTO writes to (history)
-- carry no CHECK constraint, triggers or foreign keys: OUTPUT INTO refuses such targets.

-- Live jobs only (pending, running): finished jobs move to {{prefix}}history.
CREATE TABLE {{prefix}}jobs (
  id CHAR(36) COLLATE Latin1_General_BIN2 NOT NULL PRIMARY KEY,
  name NVARCHAR(200) NOT NULL,
  queue NVARCHAR(200) NOT NULL,
  state VARCHAR(16) NOT NULL CHECK (state IN ('pending', 'running')),
  payload NVARCHAR(MAX),
  payload_bin VARBINARY(MAX),
  priority INT NOT NULL DEFAULT 0,
  attempts INT NOT NULL DEFAULT 0,
  max_attempts INT NOT NULL,
  timeout_ms INT,
  backoff NVARCHAR(MAX),
  run_at DATETIME2(3) NOT NULL,
  created_at DATETIME2(3) NOT NULL DEFAULT SYSUTCDATETIME(),
  started_at DATETIME2(3),
  ref_id NVARCHAR(500),
  tag NVARCHAR(500),
  batch_id NVARCHAR(500),
  created_by NVARCHAR(500),
  meta NVARCHAR(MAX),
  progress REAL,
  progress_message NVARCHAR(MAX),
  [checkpoint] NVARCHAR(MAX),
  error NVARCHAR(MAX),
  worker_id NVARCHAR(300),
  token CHAR(36) COLLATE Latin1_General_BIN2
);

-- Claim order: priority DESC, run_at, id (filtered index: pending rows only).
CREATE INDEX {{prefix}}jobs_claim ON {{prefix}}jobs (priority DESC, run_at, id) INCLUDE (name, queue) WHERE state = 'pending';
-- refId is unique among live jobs; jobs without one cost no entry here.
CREATE UNIQUE INDEX {{prefix}}jobs_ref ON {{prefix}}jobs (ref_id) WHERE ref_id IS NOT NULL;
CREATE INDEX {{prefix}}jobs_worker ON {{prefix}}jobs (worker_id) WHERE state = 'running';

CREATE TABLE {{prefix}}history (
  id CHAR(36) COLLATE Latin1_General_BIN2 NOT NULL PRIMARY KEY,
  name NVARCHAR(200) NOT NULL,
  queue NVARCHAR(200) NOT NULL,
  state VARCHAR(16) NOT NULL,
  payload NVARCHAR(MAX),
  payload_bin VARBINARY(MAX),
  priority INT NOT NULL,
  attempts INT NOT NULL,
  max_attempts INT NOT NULL,
  timeout_ms INT,
  backoff NVARCHAR(MAX),
  run_at DATETIME2(3) NOT NULL,
  created_at DATETIME2(3) NOT NULL,
  started_at DATETIME2(3),
  finished_at DATETIME2(3) NOT NULL,
  ref_id NVARCHAR(500),
  tag NVARCHAR(500),
  batch_id NVARCHAR(500),
  created_by NVARCHAR(500),
  meta NVARCHAR(MAX),
  progress REAL,
  progress_message NVARCHAR(MAX),
  [checkpoint] NVARCHAR(MAX),
  error NVARCHAR(MAX),
  result NVARCHAR(MAX),
  worker_id NVARCHAR(300)
);

CREATE INDEX {{prefix}}history_finished ON {{prefix}}history (finished_at);
CREATE INDEX {{prefix}}history_state ON {{prefix}}history (state, id);
CREATE INDEX {{prefix}}history_ref ON {{prefix}}history (ref_id) WHERE ref_id IS NOT NULL;
CREATE INDEX {{prefix}}history_tag ON {{prefix}}history (tag, id) WHERE tag IS NOT NULL;
CREATE INDEX {{prefix}}history_batch ON {{prefix}}history (batch_id, id) WHERE batch_id IS NOT NULL;

-- One row per failed attempt (the last successful attempt is the job record itself).
CREATE TABLE {{prefix}}attempts (
  job_id CHAR(36) COLLATE Latin1_General_BIN2 NOT NULL,
  attempt INT NOT NULL,
  worker_id NVARCHAR(300),
  started_at DATETIME2(3),
  finished_at DATETIME2(3) NOT NULL,
  error NVARCHAR(MAX),
  PRIMARY KEY (job_id, attempt)
);

CREATE TABLE {{prefix}}logs (
  seq BIGINT IDENTITY(1, 1) PRIMARY KEY,
  job_id CHAR(36) COLLATE Latin1_General_BIN2 NOT NULL,
  attempt INT NOT NULL,
  at DATETIME2(3) NOT NULL,
  message NVARCHAR(MAX) NOT NULL
);
CREATE INDEX {{prefix}}logs_job ON {{prefix}}logs (job_id, seq);

CREATE TABLE {{prefix}}workers (
  id NVARCHAR(300) NOT NULL PRIMARY KEY,
  host NVARCHAR(255) NOT NULL,
  pid INT NOT NULL,
  queues NVARCHAR(MAX),
  names NVARCHAR(MAX) NOT NULL,
  concurrency INT NOT NULL,
  started_at DATETIME2(3) NOT NULL DEFAULT SYSUTCDATETIME(),
  heartbeat_at DATETIME2(3) NOT NULL DEFAULT SYSUTCDATETIME()
);
