-- Two-phase commit (issue 14): see migrations/postgres/010_reserve.sql.
ALTER TABLE {{prefix}}jobs ADD COLUMN reserved_until DATETIME(3);
CREATE INDEX {{prefix}}jobs_reserved ON {{prefix}}jobs (reserved_until);
