-- Priority aging (issue 14): see migrations/postgres/011_priority_aging.sql. (No partial indexes:
-- state leads instead.)
ALTER TABLE {{prefix}}jobs ADD COLUMN aged_at DATETIME(3);
CREATE INDEX {{prefix}}jobs_unaged ON {{prefix}}jobs (state, aged_at, run_at);
CREATE INDEX {{prefix}}jobs_aged ON {{prefix}}jobs (state, aged_at);
