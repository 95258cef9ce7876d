-- Completed and failed jobs per minute (issue 15): see migrations/postgres/017_throughput.sql.
CREATE TABLE {{prefix}}throughput (
  start_ms BIGINT NOT NULL PRIMARY KEY,
  completed BIGINT NOT NULL,
  failed BIGINT NOT NULL,
  counted_to_ms BIGINT NOT NULL
);
