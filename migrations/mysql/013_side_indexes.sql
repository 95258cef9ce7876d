-- Keys only some jobs have, indexed without a cost to the jobs without them (issue 14; see
-- lib/driver/portable/side-index.ts). MySQL has no partial index: jobs_unique, history_unique and
-- jobs_reserved took an entry for every job, so every plain insert, claim and move to history paid
-- for three indexes it never used. Instead, a job with a unique/debounce key or a reservation gets
-- a row here, written with the job; the job's columns stay the truth.
CREATE TABLE {{prefix}}unique_jobs (
  unique_key VARCHAR(300) NOT NULL,
  job_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (unique_key, job_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX {{prefix}}unique_jobs_job ON {{prefix}}unique_jobs (job_id);

CREATE TABLE {{prefix}}reservations (
  job_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  reserved_until DATETIME(3) NOT NULL
) ENGINE = InnoDB;
CREATE INDEX {{prefix}}reservations_until ON {{prefix}}reservations (reserved_until);

-- A job is in one of the two tables at a time (moved in one transaction).
INSERT IGNORE INTO {{prefix}}unique_jobs (unique_key, job_id) SELECT unique_key, id FROM {{prefix}}jobs WHERE unique_key IS NOT NULL;
INSERT IGNORE INTO {{prefix}}unique_jobs (unique_key, job_id) SELECT unique_key, id FROM {{prefix}}history WHERE unique_key IS NOT NULL;
INSERT INTO {{prefix}}reservations (job_id, reserved_until) SELECT id, reserved_until FROM {{prefix}}jobs WHERE reserved_until IS NOT NULL;

DROP INDEX {{prefix}}jobs_unique ON {{prefix}}jobs;
DROP INDEX {{prefix}}history_unique ON {{prefix}}history;
DROP INDEX {{prefix}}jobs_reserved ON {{prefix}}jobs;
