-- Uniqueness and debounce (issue 14): a job's key (`u:` + unique.key or `d:` + debounce.key), on
-- the live table and in history (unique.forMs and unique.states reach finished jobs), and one row
-- per key used, which the enqueue locks (upsert) so that concurrent enqueues of one key take turns.
ALTER TABLE {{prefix}}jobs ADD COLUMN unique_key text;
ALTER TABLE {{prefix}}history ADD COLUMN unique_key text;
CREATE INDEX {{prefix}}jobs_unique ON {{prefix}}jobs (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX {{prefix}}history_unique ON {{prefix}}history (unique_key, created_at) WHERE unique_key IS NOT NULL;

CREATE TABLE {{prefix}}keys (
  key text PRIMARY KEY,
  touched_at timestamptz NOT NULL
);
