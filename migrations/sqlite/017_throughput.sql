-- Completed and failed jobs per minute (issue 15): see migrations/postgres/017_throughput.sql.
CREATE TABLE {{prefix}}throughput (
  start_ms INTEGER PRIMARY KEY,
  completed INTEGER NOT NULL,
  failed INTEGER NOT NULL,
  counted_to_ms INTEGER NOT NULL
);
