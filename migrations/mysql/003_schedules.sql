-- Recurring schedules and the ticks they fired. A tick is (schedule, nominal fire time): its
-- primary key makes every tick fire at most once, however many instances run the scheduler.
-- `key` is a reserved word here: it is always quoted.
CREATE TABLE {{prefix}}schedules (
  `key` VARCHAR(255) NOT NULL PRIMARY KEY,
  name VARCHAR(200) NOT NULL,
  cron VARCHAR(255),
  timezone VARCHAR(64),
  every_ms BIGINT,
  start_at DATETIME(3),
  end_at DATETIME(3),
  max_runs INT,
  payload JSON,
  options JSON,
  overlap VARCHAR(16) NOT NULL,
  missed VARCHAR(16) NOT NULL,
  enabled TINYINT(1) NOT NULL DEFAULT 1,
  next_run_at DATETIME(3),
  last_run_at DATETIME(3),
  last_job_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin,
  runs INT NOT NULL DEFAULT 0,
  updated_at DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX {{prefix}}schedules_due ON {{prefix}}schedules (enabled, next_run_at);

CREATE TABLE {{prefix}}schedule_ticks (
  schedule_key VARCHAR(255) NOT NULL,
  fire_at DATETIME(3) NOT NULL,
  job_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (schedule_key, fire_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
