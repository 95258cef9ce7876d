-- History partitioned by month on finished_at (issue 15; the README's "Partitioned history"). No row is copied: the table as it is becomes the partition {{prefix}}history_legacy, from
-- the beginning of time to the end of next month (UTC), and the leader creates one partition per
-- month from then on (lib/driver/postgres/partitions.ts). Retention drops whole months.
--
-- Locks: the rename takes ACCESS EXCLUSIVE on history until this commits (completions wait). The
-- time is the (id, finished_at) index build below plus one scan that checks the range; to do
-- without the build, create that index beforehand with CREATE UNIQUE INDEX CONCURRENTLY under the
-- same name (see the README: "Partitioned history").
ALTER TABLE {{prefix}}history RENAME TO {{prefix}}history_legacy;
ALTER INDEX {{prefix}}history_finished RENAME TO {{prefix}}history_legacy_finished;
ALTER INDEX {{prefix}}history_state RENAME TO {{prefix}}history_legacy_state;
ALTER INDEX {{prefix}}history_ref RENAME TO {{prefix}}history_legacy_ref;
ALTER INDEX {{prefix}}history_tag RENAME TO {{prefix}}history_legacy_tag;
ALTER INDEX {{prefix}}history_batch RENAME TO {{prefix}}history_legacy_batch;
ALTER INDEX {{prefix}}history_name RENAME TO {{prefix}}history_legacy_name;
ALTER INDEX {{prefix}}history_queue RENAME TO {{prefix}}history_legacy_queue;
ALTER INDEX {{prefix}}history_user RENAME TO {{prefix}}history_legacy_user;
ALTER INDEX {{prefix}}history_unique RENAME TO {{prefix}}history_legacy_unique;

-- The key of a partitioned table includes its partition key. The old key (id) goes: an id is in
-- one place at a time anyway (every move deletes it where it was in the same transaction).
CREATE UNIQUE INDEX IF NOT EXISTS {{prefix}}history_legacy_key ON {{prefix}}history_legacy (id, finished_at);
ALTER TABLE {{prefix}}history_legacy DROP CONSTRAINT {{prefix}}history_pkey;
ALTER TABLE {{prefix}}history_legacy ADD CONSTRAINT {{prefix}}history_legacy_pkey PRIMARY KEY USING INDEX {{prefix}}history_legacy_key;

CREATE TABLE {{prefix}}history (LIKE {{prefix}}history_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (finished_at);
ALTER TABLE {{prefix}}history ADD CONSTRAINT {{prefix}}history_pkey PRIMARY KEY (id, finished_at);
-- The same indexes as before (their definitions match the legacy ones, so attaching reuses them).
CREATE INDEX {{prefix}}history_finished ON {{prefix}}history (finished_at, state);
CREATE INDEX {{prefix}}history_state ON {{prefix}}history (state, id);
CREATE INDEX {{prefix}}history_ref ON {{prefix}}history (ref_id) WHERE ref_id IS NOT NULL;
CREATE INDEX {{prefix}}history_tag ON {{prefix}}history (tag, id) WHERE tag IS NOT NULL;
CREATE INDEX {{prefix}}history_batch ON {{prefix}}history (batch_id, id) WHERE batch_id IS NOT NULL;
CREATE INDEX {{prefix}}history_name ON {{prefix}}history (name, id);
CREATE INDEX {{prefix}}history_queue ON {{prefix}}history (queue, id);
CREATE INDEX {{prefix}}history_user ON {{prefix}}history (user_id, id) WHERE user_id IS NOT NULL;
CREATE INDEX {{prefix}}history_unique ON {{prefix}}history (unique_key, created_at) WHERE unique_key IS NOT NULL;

-- Bounds are UTC month starts (a bound expression is evaluated once, here). The legacy partition
-- also holds next month, so the instances starting right after this migration (a deploy) find the
-- current and next month there and run no partition DDL at start.
ALTER TABLE {{prefix}}history ATTACH PARTITION {{prefix}}history_legacy
  FOR VALUES FROM (MINVALUE) TO ((date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months') AT TIME ZONE 'UTC');

-- Where a finished job goes when its month has no partition yet (no leader ran over a month's
-- start): a completion never fails for want of a partition. The leader moves such rows out when it
-- creates the month.
CREATE TABLE {{prefix}}history_default PARTITION OF {{prefix}}history DEFAULT
