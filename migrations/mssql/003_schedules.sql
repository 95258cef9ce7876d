-- Recurring schedules and the ticks they fired. A tick is (schedule, nominal fire time): its
-- primary key makes every tick fire at most once, however many instances run the scheduler.
CREATE TABLE {{prefix}}schedules (
  [key] NVARCHAR(200) NOT NULL PRIMARY KEY,
  name NVARCHAR(200) NOT NULL,
  cron NVARCHAR(200),
  timezone NVARCHAR(100),
  every_ms BIGINT,
  start_at DATETIME2(3),
  end_at DATETIME2(3),
  max_runs INT,
  payload NVARCHAR(MAX),
  options NVARCHAR(MAX),
  overlap VARCHAR(16) NOT NULL,
  missed VARCHAR(16) NOT NULL,
  enabled BIT NOT NULL DEFAULT 1,
  next_run_at DATETIME2(3),
  last_run_at DATETIME2(3),
  last_job_id CHAR(36) COLLATE Latin1_General_BIN2,
  runs INT NOT NULL DEFAULT 0,
  updated_at DATETIME2(3) NOT NULL DEFAULT SYSUTCDATETIME()
);
CREATE INDEX {{prefix}}schedules_due ON {{prefix}}schedules (next_run_at) WHERE enabled = 1;

CREATE TABLE {{prefix}}schedule_ticks (
  schedule_key NVARCHAR(200) NOT NULL,
  fire_at DATETIME2(3) NOT NULL,
  job_id CHAR(36) COLLATE Latin1_General_BIN2 NOT NULL,
  PRIMARY KEY (schedule_key, fire_at)
);
