-- Leases: named, expiring locks with a fencing token that grows each time ownership changes.
-- The app's own cross-process mutual exclusion (jobs.locks) uses them; leadership uses GET_LOCK.
CREATE TABLE {{prefix}}leases (
  name VARCHAR(255) NOT NULL PRIMARY KEY,
  owner VARCHAR(255) NOT NULL,
  token BIGINT NOT NULL,
  expires_at DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
