-- Priority aging (issue 14): with createJobs({ priorityAging: { everyMs } }) the leader raises a
-- due pending job's priority by one for each everyMs it waited; aged_at is its last raise. Claims
-- are unchanged (their index). Jobs raised before are found by their own index, which only they
-- pay for; jobs never raised are found through the claim index (a job without aging must not pay
-- for an index it never uses: every new job would be in one on "aged_at IS NULL").
ALTER TABLE {{prefix}}jobs ADD COLUMN aged_at INTEGER;
CREATE INDEX {{prefix}}jobs_aged ON {{prefix}}jobs (aged_at) WHERE state = 'pending' AND aged_at IS NOT NULL;
