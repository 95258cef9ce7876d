-- Serial keys (issue 14): jobs with the same serial_key run one at a time, in enqueue order. Each
-- new job of a key depends on the key's tail (the last one enqueued, kept in its keys row) through
-- a serial edge (deps.position -2), released when the tail finishes in any state.
ALTER TABLE {{prefix}}jobs ADD COLUMN serial_key text;
ALTER TABLE {{prefix}}history ADD COLUMN serial_key text;
ALTER TABLE {{prefix}}keys ADD COLUMN tail_id uuid;
