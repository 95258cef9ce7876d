-- The user context of a job (issue 13): the user it runs for (userId, also a list filter), where
-- its outcome is reported (replyTo) and string arguments (args, a JSON object of strings). Live
-- and history tables alike: a job keeps them when it finishes. The userId indexes are partial
-- where the database allows it, so jobs without a user cost no entry.
-- (T-SQL: ADD without the COLUMN keyword.)
ALTER TABLE {{prefix}}jobs ADD user_id NVARCHAR(255);
ALTER TABLE {{prefix}}jobs ADD reply_to NVARCHAR(2000);
ALTER TABLE {{prefix}}jobs ADD args NVARCHAR(MAX);
ALTER TABLE {{prefix}}history ADD user_id NVARCHAR(255);
ALTER TABLE {{prefix}}history ADD reply_to NVARCHAR(2000);
ALTER TABLE {{prefix}}history ADD args NVARCHAR(MAX);

CREATE INDEX {{prefix}}jobs_user ON {{prefix}}jobs (user_id, id) WHERE user_id IS NOT NULL;
CREATE INDEX {{prefix}}history_user ON {{prefix}}history (user_id, id) WHERE user_id IS NOT NULL;
