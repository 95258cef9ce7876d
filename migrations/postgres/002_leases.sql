-- Leases: named, expiring locks with a fencing token that grows each time ownership changes.
-- The app's own cross-process mutual exclusion (jobs.locks) and, later, leadership use them.
CREATE TABLE {{prefix}}leases (
  name text PRIMARY KEY,
  owner text NOT NULL,
  token bigint NOT NULL,
  expires_at timestamptz NOT NULL
);
