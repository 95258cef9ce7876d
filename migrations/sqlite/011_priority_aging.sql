-- Priority aging (issue 14): with createJobs({ priorityAging: { everyMs } }) the leader raises a
-- due pending job's priority by one for each everyMs it waited; aged_at is its last raise. Claims
-- are unchanged (their index); these indexes find the jobs to raise without scanning the rest.
ALTER TABLE {{prefix}}jobs ADD COLUMN aged_at INTEGER;
CREATE INDEX {{prefix}}jobs_unaged ON {{prefix}}jobs (run_at) WHERE state = 'pending' AND aged_at IS NULL;
CREATE INDEX {{prefix}}jobs_aged ON {{prefix}}jobs (aged_at) WHERE state = 'pending' AND aged_at IS NOT NULL;
