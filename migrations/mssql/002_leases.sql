-- Leases: named, expiring locks with a fencing token that grows each time ownership changes.
-- The app's own cross-process mutual exclusion (jobs.locks) uses them; leadership on SQL Server
-- uses a session app lock (sp_getapplock) instead, as PostgreSQL uses an advisory lock.
CREATE TABLE {{prefix}}leases (
  name NVARCHAR(200) NOT NULL PRIMARY KEY,
  owner NVARCHAR(300) NOT NULL,
  token BIGINT NOT NULL,
  expires_at DATETIME2(3) NOT NULL
);
