-- Leases: named, expiring locks with a fencing token that grows each time ownership changes.
-- The app's own cross-process mutual exclusion (jobs.locks) and, later, leadership use them.
CREATE TABLE {{prefix}}leases (
  name TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  token INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
