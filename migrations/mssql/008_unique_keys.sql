-- Uniqueness and debounce (issue 14): see migrations/postgres/008_unique_keys.sql.
ALTER TABLE {{prefix}}jobs ADD unique_key NVARCHAR(300);
ALTER TABLE {{prefix}}history ADD unique_key NVARCHAR(300);
CREATE INDEX {{prefix}}jobs_unique ON {{prefix}}jobs (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX {{prefix}}history_unique ON {{prefix}}history (unique_key, created_at) WHERE unique_key IS NOT NULL;

CREATE TABLE {{prefix}}keys (
  [key] NVARCHAR(300) NOT NULL PRIMARY KEY,
  touched_at DATETIME2(3) NOT NULL
);
