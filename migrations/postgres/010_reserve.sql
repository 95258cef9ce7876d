-- Two-phase commit (issue 14): a job enqueued with reserve: true holds its place (its serial key,
-- its FIFO order) but waits (one more hold in parents_left) until jobs.commitReserved; one never
-- committed by reserved_until is cancelled by the leader.
ALTER TABLE {{prefix}}jobs ADD COLUMN reserved_until timestamptz;
CREATE INDEX {{prefix}}jobs_reserved ON {{prefix}}jobs (reserved_until) WHERE reserved_until IS NOT NULL;
