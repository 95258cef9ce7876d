-- The hash of a schedule's definition in code, as last applied. At start an instance re-applies
-- its code definition only when this differs (the code changed), so edits made at run time
-- survive restarts until the code itself changes.
ALTER TABLE {{prefix}}schedules ADD COLUMN code_hash VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin;
