-- Completed and failed jobs per minute (issue 15): the admin's throughput chart sums these rows
-- instead of counting an hour of history (lib/driver/portable/throughput.ts). The leader writes a
-- row for every minute, zero ones too (the rows say which minutes are counted), every few seconds
-- for the current one: start_ms is the minute's start and counted_to_ms how far into it the row
-- is counted (its end once it closed), in epoch milliseconds.
CREATE TABLE {{prefix}}throughput (
  start_ms bigint PRIMARY KEY,
  completed bigint NOT NULL,
  failed bigint NOT NULL,
  counted_to_ms bigint NOT NULL
);
