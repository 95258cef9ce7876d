-- sqljobs schema for SQLite. Times are integer milliseconds since the Unix epoch (UTC).
-- {{prefix}} is the validated table prefix (default sqljobs_).

-- Rowid tables: rows carry payloads, and SQLite keeps large rows better outside the key b-tree.
-- Live jobs only (pending, running): finished jobs move to {{prefix}}history, so the claim
-- index stays small however much history accumulates.
CREATE TABLE {{prefix}}jobs (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  queue TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'running')),
  payload TEXT,
  payload_bin BLOB,
  priority INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  timeout_ms INTEGER,
  backoff TEXT,
  run_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  ref_id TEXT,
  tag TEXT,
  batch_id TEXT,
  created_by TEXT,
  meta TEXT,
  progress REAL,
  progress_message TEXT,
  checkpoint TEXT,
  error TEXT,
  worker_id TEXT,
  token TEXT
);

-- Claim order: priority DESC, run_at, then rowid (insertion order; every SQLite index ends with it).
CREATE INDEX {{prefix}}jobs_claim ON {{prefix}}jobs (priority DESC, run_at) WHERE state = 'pending';
-- refId is unique among live jobs; jobs without one cost no entry here.
CREATE UNIQUE INDEX {{prefix}}jobs_ref ON {{prefix}}jobs (ref_id) WHERE ref_id IS NOT NULL;
CREATE INDEX {{prefix}}jobs_worker ON {{prefix}}jobs (worker_id) WHERE state = 'running';

CREATE TABLE {{prefix}}history (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  queue TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('completed', 'failed', 'cancelled', 'skipped')),
  payload TEXT,
  payload_bin BLOB,
  priority INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  timeout_ms INTEGER,
  backoff TEXT,
  run_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER NOT NULL,
  ref_id TEXT,
  tag TEXT,
  batch_id TEXT,
  created_by TEXT,
  meta TEXT,
  progress REAL,
  progress_message TEXT,
  checkpoint TEXT,
  error TEXT,
  result TEXT,
  worker_id TEXT
);

-- Every history index is paid on every completion: retention, the state filter and the
-- selective filters (refId, tag, batch) only; name and queue filters walk (state, id).
CREATE INDEX {{prefix}}history_finished ON {{prefix}}history (finished_at);
CREATE INDEX {{prefix}}history_state ON {{prefix}}history (state, id);
CREATE INDEX {{prefix}}history_ref ON {{prefix}}history (ref_id) WHERE ref_id IS NOT NULL;
CREATE INDEX {{prefix}}history_tag ON {{prefix}}history (tag, id) WHERE tag IS NOT NULL;
CREATE INDEX {{prefix}}history_batch ON {{prefix}}history (batch_id, id) WHERE batch_id IS NOT NULL;

-- One row per failed attempt (the last successful attempt is the job record itself).
CREATE TABLE {{prefix}}attempts (
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  worker_id TEXT,
  started_at INTEGER,
  finished_at INTEGER NOT NULL,
  error TEXT,
  PRIMARY KEY (job_id, attempt)
);

CREATE TABLE {{prefix}}logs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  at INTEGER NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX {{prefix}}logs_job ON {{prefix}}logs (job_id, seq);

CREATE TABLE {{prefix}}workers (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  queues TEXT,
  names TEXT NOT NULL,
  concurrency INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL
);
