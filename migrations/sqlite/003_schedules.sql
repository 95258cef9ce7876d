-- Recurring schedules and the ticks they fired. A tick is (schedule, nominal fire time): its
-- primary key makes every tick fire at most once, however many instances run the scheduler.
CREATE TABLE {{prefix}}schedules (
  key TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  cron TEXT,
  timezone TEXT,
  every_ms INTEGER,
  start_at INTEGER,
  end_at INTEGER,
  max_runs INTEGER,
  payload TEXT,
  options TEXT,
  overlap TEXT NOT NULL,
  missed TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1,
  next_run_at INTEGER,
  last_run_at INTEGER,
  last_job_id TEXT,
  runs INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
CREATE INDEX {{prefix}}schedules_due ON {{prefix}}schedules (next_run_at) WHERE enabled = 1;

CREATE TABLE {{prefix}}schedule_ticks (
  schedule_key TEXT NOT NULL,
  fire_at INTEGER NOT NULL,
  job_id TEXT NOT NULL,
  PRIMARY KEY (schedule_key, fire_at)
);
