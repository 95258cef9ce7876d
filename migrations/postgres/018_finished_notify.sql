-- Pushed news of finished jobs (jobs.subscribe, jobs.waitFor): a process that subscribes LISTENs on
-- the channel {{prefix}}finished and keeps a row in {{prefix}}subscribers (its lease, renewed while
-- it listens). Every statement that moves jobs to history (complete, fail, cancel, skip, rescue,
-- whichever process runs it) then sends one NOTIFY at its commit; the subscriber reads history from
-- its cursor, as its 500 ms poll does, which stays as the safety net.
--
-- While no lease is live the trigger sends nothing, so completions do not pay for NOTIFY (its
-- commit-time lock on the notification queue serialises every notifying commit in the cluster):
-- they pay one look at this table, which holds a row per subscribing process. See bench/finished-notify.ts.
CREATE TABLE {{prefix}}subscribers (
  id uuid PRIMARY KEY,
  owner text NOT NULL,
  expires_at timestamptz NOT NULL
);

-- A statement trigger fires once per statement (also one that moved no row: the subscriber's read
-- then finds nothing new); identical notifications in one transaction reach a listener once.
CREATE OR REPLACE FUNCTION {{prefix}}finished_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM {{prefix}}subscribers WHERE expires_at > now()) THEN
    PERFORM pg_notify('{{prefix}}finished', '');
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER {{prefix}}history_finished_notify AFTER INSERT ON {{prefix}}history
  FOR EACH STATEMENT EXECUTE FUNCTION {{prefix}}finished_notify();
