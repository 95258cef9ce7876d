-- Priority aging (issue 14): see migrations/postgres/011_priority_aging.sql.
ALTER TABLE {{prefix}}jobs ADD aged_at DATETIME2(3);
CREATE INDEX {{prefix}}jobs_aged ON {{prefix}}jobs (aged_at) WHERE state = 'pending' AND aged_at IS NOT NULL;
