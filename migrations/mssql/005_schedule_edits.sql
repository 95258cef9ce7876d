-- The hash of a schedule's definition in code, as last applied. At start an instance re-applies
-- its code definition only when this differs (the code changed), so edits made at run time
-- survive restarts until the code itself changes. (T-SQL: ADD without the COLUMN keyword.)
ALTER TABLE {{prefix}}schedules ADD code_hash VARCHAR(64);
