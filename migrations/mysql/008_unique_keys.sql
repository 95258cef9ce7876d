-- Uniqueness and debounce (issue 14): see migrations/postgres/008_unique_keys.sql.
ALTER TABLE {{prefix}}jobs ADD COLUMN unique_key VARCHAR(300);
ALTER TABLE {{prefix}}history ADD COLUMN unique_key VARCHAR(300);
CREATE INDEX {{prefix}}jobs_unique ON {{prefix}}jobs (unique_key);
CREATE INDEX {{prefix}}history_unique ON {{prefix}}history (unique_key, created_at);

CREATE TABLE {{prefix}}keys (
  `key` VARCHAR(300) NOT NULL PRIMARY KEY,
  touched_at DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
