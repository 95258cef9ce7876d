-- Logs and attempts partitioned by the month their job was made (issue 15; the README's
-- "Partitioned history"): a job's id is a UUIDv7, whose first 48 bits are the time it was made, so a
-- month's jobs are a range of ids. Retention drops a month of them whole once none of its jobs is
-- left, instead of deleting a month of history's trail row by row. As in 014, no row is copied: each
-- table becomes its partition <table>_legacy, from MINVALUE to the first id of the month after next
-- (UTC), and the leader makes one partition per month from then on (lib/driver/postgres/partitions.ts).
--
-- Locks: the renames take ACCESS EXCLUSIVE on logs and attempts until this commits (log writes and
-- failed attempts wait). The time is the logs (job_id, seq) key's build plus one scan of each table
-- that checks the range; to do without the build, create that index beforehand with CREATE UNIQUE
-- INDEX CONCURRENTLY under the same name (see the README).
ALTER TABLE {{prefix}}logs RENAME TO {{prefix}}logs_legacy;
ALTER INDEX {{prefix}}logs_job RENAME TO {{prefix}}logs_legacy_job;
-- The key of a partitioned table includes its partition key: (job_id, seq), which also serves every
-- read of a job's lines, so the (job_id, seq) index it replaces goes.
CREATE UNIQUE INDEX IF NOT EXISTS {{prefix}}logs_legacy_key ON {{prefix}}logs_legacy (job_id, seq);
ALTER TABLE {{prefix}}logs_legacy DROP CONSTRAINT {{prefix}}logs_pkey;
ALTER TABLE {{prefix}}logs_legacy ADD CONSTRAINT {{prefix}}logs_legacy_pkey PRIMARY KEY USING INDEX {{prefix}}logs_legacy_key;
DROP INDEX {{prefix}}logs_legacy_job;
CREATE TABLE {{prefix}}logs (LIKE {{prefix}}logs_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (job_id);
ALTER TABLE {{prefix}}logs ADD CONSTRAINT {{prefix}}logs_pkey PRIMARY KEY (job_id, seq);
-- seq's sequence belonged to the old table's column: it goes with the new one, not with legacy's drop.
ALTER SEQUENCE {{prefix}}logs_seq_seq OWNED BY {{prefix}}logs.seq;

ALTER TABLE {{prefix}}attempts RENAME TO {{prefix}}attempts_legacy;
ALTER TABLE {{prefix}}attempts_legacy RENAME CONSTRAINT {{prefix}}attempts_pkey TO {{prefix}}attempts_legacy_pkey;
CREATE TABLE {{prefix}}attempts (LIKE {{prefix}}attempts_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (job_id);
ALTER TABLE {{prefix}}attempts ADD CONSTRAINT {{prefix}}attempts_pkey PRIMARY KEY (job_id, attempt);

-- The bound: the first UUID of the month after next's first millisecond (32 hex digits: the 12 of
-- the time, then zeros). Evaluated once, here.
ALTER TABLE {{prefix}}logs ATTACH PARTITION {{prefix}}logs_legacy FOR VALUES FROM (MINVALUE)
  TO ((lpad(to_hex((extract(epoch FROM date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months') * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid);
ALTER TABLE {{prefix}}attempts ATTACH PARTITION {{prefix}}attempts_legacy FOR VALUES FROM (MINVALUE)
  TO ((lpad(to_hex((extract(epoch FROM date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months') * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid);

-- Where a line or an attempt goes when its job's month has no partition yet (a job made in a month no
-- leader prepared, or an id that is not a UUIDv7): a write never fails for want of a partition.
CREATE TABLE {{prefix}}logs_default PARTITION OF {{prefix}}logs DEFAULT;
CREATE TABLE {{prefix}}attempts_default PARTITION OF {{prefix}}attempts DEFAULT;
