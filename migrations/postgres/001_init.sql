-- sqljobs schema for PostgreSQL. {{prefix}} is the validated table prefix (default sqljobs_).

-- Live jobs only (pending, running): finished jobs move to {{prefix}}history, so the claim
-- index stays small and the hot table does not bloat as history grows.
CREATE TABLE {{prefix}}jobs (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  queue text NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'running')),
  payload json,
  payload_bin bytea,
  priority integer NOT NULL DEFAULT 0,
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL,
  timeout_ms integer,
  backoff json,
  run_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  ref_id text,
  tag text,
  batch_id text,
  created_by text,
  meta json,
  progress real,
  progress_message text,
  checkpoint json,
  error json,
  worker_id text,
  token uuid
) WITH (fillfactor = 80);

-- Claim order: priority DESC, run_at, id.
CREATE INDEX {{prefix}}jobs_claim ON {{prefix}}jobs (priority DESC, run_at, id) WHERE state = 'pending';
-- refId is unique among live jobs; jobs without one cost no entry here.
CREATE UNIQUE INDEX {{prefix}}jobs_ref ON {{prefix}}jobs (ref_id) WHERE ref_id IS NOT NULL;
CREATE INDEX {{prefix}}jobs_worker ON {{prefix}}jobs (worker_id) WHERE state = 'running';

CREATE TABLE {{prefix}}history (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  queue text NOT NULL,
  state text NOT NULL CHECK (state IN ('completed', 'failed', 'cancelled', 'skipped')),
  payload json,
  payload_bin bytea,
  priority integer NOT NULL,
  attempts integer NOT NULL,
  max_attempts integer NOT NULL,
  timeout_ms integer,
  backoff json,
  run_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  started_at timestamptz,
  finished_at timestamptz NOT NULL,
  ref_id text,
  tag text,
  batch_id text,
  created_by text,
  meta json,
  progress real,
  progress_message text,
  checkpoint json,
  error json,
  result json,
  worker_id text
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
  job_id uuid NOT NULL,
  attempt integer NOT NULL,
  worker_id text,
  started_at timestamptz,
  finished_at timestamptz NOT NULL,
  error json,
  PRIMARY KEY (job_id, attempt)
);

CREATE TABLE {{prefix}}logs (
  seq bigserial PRIMARY KEY,
  job_id uuid NOT NULL,
  attempt integer NOT NULL,
  at timestamptz NOT NULL,
  message text NOT NULL
);
CREATE INDEX {{prefix}}logs_job ON {{prefix}}logs (job_id, seq);

CREATE TABLE {{prefix}}workers (
  id text PRIMARY KEY,
  host text NOT NULL,
  pid integer NOT NULL,
  queues json,
  names json NOT NULL,
  concurrency integer NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
