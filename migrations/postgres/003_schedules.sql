-- Recurring schedules and the ticks they fired. A tick is (schedule, nominal fire time): its
-- primary key makes every tick fire at most once, however many instances run the scheduler.
CREATE TABLE {{prefix}}schedules (
  key text PRIMARY KEY,
  name text NOT NULL,
  cron text,
  timezone text,
  every_ms bigint,
  start_at timestamptz,
  end_at timestamptz,
  max_runs integer,
  payload json,
  options json,
  overlap text NOT NULL,
  missed text NOT NULL,
  enabled boolean NOT NULL DEFAULT true,
  next_run_at timestamptz,
  last_run_at timestamptz,
  last_job_id uuid,
  runs integer NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX {{prefix}}schedules_due ON {{prefix}}schedules (next_run_at) WHERE enabled;

CREATE TABLE {{prefix}}schedule_ticks (
  schedule_key text NOT NULL,
  fire_at timestamptz NOT NULL,
  job_id uuid NOT NULL,
  PRIMARY KEY (schedule_key, fire_at)
);
