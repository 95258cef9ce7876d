-- Queues an operator paused (admin, jobs.queues.pause): a row means paused. The claim skips
-- their pending jobs until the row is deleted (resume). Small: one row per paused queue.
CREATE TABLE {{prefix}}paused_queues (
  queue VARCHAR(200) NOT NULL PRIMARY KEY,
  paused_at DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per-queue depth, running count and oldest due job (queues page, overview) read this index
-- alone instead of the live rows.
CREATE INDEX {{prefix}}jobs_queue ON {{prefix}}jobs (queue, state, run_at);

-- Throughput (completed and failed per minute over the last hour) reads (finished_at, state)
-- from the index alone; retention still finds old rows by its finished_at prefix.
DROP INDEX {{prefix}}history_finished ON {{prefix}}history;
CREATE INDEX {{prefix}}history_finished ON {{prefix}}history (finished_at, state);

-- The admin's name and queue filters over history: without them a rare name walks the whole
-- (state, id) index. Each costs one index entry per finished job (measured in the README).
CREATE INDEX {{prefix}}history_name ON {{prefix}}history (name, id);
CREATE INDEX {{prefix}}history_queue ON {{prefix}}history (queue, id);
