-- Workflows (issue 13): dependencies between jobs, callbacks and batches.
--
-- flow: what finishing a job must do besides moving it (bits: 1 it has dependents, 2 it has
-- callbacks, 4 it belongs to a batch with callbacks, 8 it has parents). A job with flow 0 takes
-- the one-statement completion; the others finish in a transaction that also releases or cancels
-- their dependents, enqueues their callbacks and counts their batch (lib/driver/portable/flow.ts).
-- parents_left: parents not yet completed; while above 0 the job is pending with run_at at the
-- end of time, so the claim index and statement need no change.
ALTER TABLE {{prefix}}jobs ADD COLUMN flow smallint NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}jobs ADD COLUMN parents_left integer NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}jobs ADD COLUMN callbacks json;
ALTER TABLE {{prefix}}jobs ADD COLUMN callback_batch text;
ALTER TABLE {{prefix}}history ADD COLUMN flow smallint NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}history ADD COLUMN callbacks json;
ALTER TABLE {{prefix}}history ADD COLUMN callback_batch text;

-- One row per dependency, kept after both jobs finish (ctx.parents, the admin); pruned with the child.
CREATE TABLE {{prefix}}deps (
  child_id uuid NOT NULL,
  parent_id uuid NOT NULL,
  position integer NOT NULL,
  PRIMARY KEY (child_id, parent_id)
);
CREATE INDEX {{prefix}}deps_parent ON {{prefix}}deps (parent_id);

-- A batch made by jobs.batch: its size, its finished and failed counts (updated under the row's
-- lock by the transaction that finishes each job, so exactly one sees the last) and which
-- callbacks were enqueued (bits: 1 onComplete, 2 onSuccess, 4 onFailure).
CREATE TABLE {{prefix}}batches (
  id text PRIMARY KEY,
  total integer NOT NULL,
  finished integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  callbacks json,
  fired smallint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL,
  finished_at timestamptz
);

-- batchStatus counts a batch's live jobs by this index (its finished ones by history_batch).
CREATE INDEX {{prefix}}jobs_batch ON {{prefix}}jobs (batch_id) WHERE batch_id IS NOT NULL;
