-- Completed and failed jobs per minute (issue 15): the admin's throughput chart sums these rows
-- instead of counting an hour of history (lib/driver/portable/throughput.ts). The leader writes a
-- row for every minute once it closed, zero ones too (the rows say which minutes are counted);
-- start_ms is the minute's start in epoch milliseconds.
CREATE TABLE {{prefix}}throughput (
  start_ms bigint PRIMARY KEY,
  completed bigint NOT NULL,
  failed bigint NOT NULL
);
