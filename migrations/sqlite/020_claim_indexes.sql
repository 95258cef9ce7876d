-- As on PostgreSQL (migrations/postgres/020_claim_indexes.sql): jobs_queue holds pending rows
-- only, so a claim writes no entry there; running rows are found by queue in jobs_running, which
-- replaces jobs_worker.
DROP INDEX {{prefix}}jobs_queue;
CREATE INDEX {{prefix}}jobs_queue ON {{prefix}}jobs (queue, priority DESC, fair_rank, run_at) WHERE state = 'pending';
DROP INDEX {{prefix}}jobs_worker;
CREATE INDEX {{prefix}}jobs_running ON {{prefix}}jobs (queue, worker_id) WHERE state = 'running';
