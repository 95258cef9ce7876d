-- The user context of a job (issue 13): the user it runs for (userId, also a list filter), where
-- its outcome is reported (replyTo) and string arguments (args, a JSON object of strings). Live
-- and history tables alike: a job keeps them when it finishes. The userId indexes are partial
-- where the database allows it, so jobs without a user cost no entry.
-- (MySQL has no partial index: a NULL user_id still takes an entry.)
ALTER TABLE {{prefix}}jobs ADD COLUMN user_id VARCHAR(255);
ALTER TABLE {{prefix}}jobs ADD COLUMN reply_to VARCHAR(2000);
ALTER TABLE {{prefix}}jobs ADD COLUMN args JSON;
ALTER TABLE {{prefix}}history ADD COLUMN user_id VARCHAR(255);
ALTER TABLE {{prefix}}history ADD COLUMN reply_to VARCHAR(2000);
ALTER TABLE {{prefix}}history ADD COLUMN args JSON;

CREATE INDEX {{prefix}}jobs_user ON {{prefix}}jobs (user_id, id);
CREATE INDEX {{prefix}}history_user ON {{prefix}}history (user_id, id);
