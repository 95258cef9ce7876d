-- Serial keys (issue 14): see migrations/postgres/009_serial_keys.sql.
ALTER TABLE {{prefix}}jobs ADD COLUMN serial_key TEXT;
ALTER TABLE {{prefix}}history ADD COLUMN serial_key TEXT;
ALTER TABLE {{prefix}}keys ADD COLUMN tail_id TEXT;
