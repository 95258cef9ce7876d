-- Two-phase commit (issue 14): see migrations/postgres/010_reserve.sql.
ALTER TABLE {{prefix}}jobs ADD COLUMN reserved_until INTEGER;
CREATE INDEX {{prefix}}jobs_reserved ON {{prefix}}jobs (reserved_until) WHERE reserved_until IS NOT NULL;
