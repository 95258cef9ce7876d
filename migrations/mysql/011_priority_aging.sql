-- Priority aging (issue 14): see migrations/postgres/011_priority_aging.sql. No index: without
-- partial indexes every job would pay for one it never uses; the leader's aging reads walk the
-- claim index (state first) instead.
ALTER TABLE {{prefix}}jobs ADD COLUMN aged_at DATETIME(3);
