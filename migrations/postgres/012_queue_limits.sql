-- Fair groups and queue limits (issue 14). A queue with a row here is claimed apart, one claim at
-- a time per queue across every process (the claim locks the row): its limits are counted in that
-- claim, so they hold however many workers run. General claims skip these queues.
--   concurrency: most running jobs of the queue; group_concurrency: most of one group;
--   rate_limit jobs started in any rate_interval_ms (rate_per 'queue' or 'group'), counted in starts;
--   vtime: the fair rank of the last job claimed (a newly busy group's jobs start there);
--   code_hash: the createJobs settings it was written from (a run-time edit survives restarts
--   until the code's settings change).
CREATE TABLE {{prefix}}queues (
  queue text PRIMARY KEY,
  concurrency integer,
  group_concurrency integer,
  rate_limit integer,
  rate_interval_ms integer,
  rate_per text,
  vtime bigint NOT NULL DEFAULT 0,
  code_hash text,
  updated_at timestamptz NOT NULL
);

-- A group's last fair rank: its next job ranks one past it (or at the queue's vtime, if later),
-- so claims in fair-rank order take the groups' jobs in turn.
CREATE TABLE {{prefix}}queue_groups (
  queue text NOT NULL,
  group_key text NOT NULL,
  last_rank bigint NOT NULL DEFAULT 0,
  touched_at timestamptz NOT NULL,
  PRIMARY KEY (queue, group_key)
);

-- Job starts inside a rate-limited queue's window (older ones are deleted by the claim).
CREATE TABLE {{prefix}}starts (
  queue text NOT NULL,
  started_at timestamptz NOT NULL,
  job_id uuid NOT NULL,
  group_key text,
  PRIMARY KEY (queue, started_at, job_id)
);

ALTER TABLE {{prefix}}jobs ADD COLUMN group_key text;
ALTER TABLE {{prefix}}jobs ADD COLUMN fair_rank bigint NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}history ADD COLUMN group_key text;
-- The per-queue index (was queue, state, run_at) now also gives a managed queue's claim order
-- (priority, then fair rank, then run time): one index as before, so a job in a plain queue pays
-- for nothing more. It still serves the per-queue counts and a queue's running count.
DROP INDEX {{prefix}}jobs_queue;
CREATE INDEX {{prefix}}jobs_queue ON {{prefix}}jobs (queue, state, priority DESC, fair_rank, run_at, id);
