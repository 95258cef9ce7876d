-- Serial keys (issue 14): see migrations/postgres/009_serial_keys.sql.
ALTER TABLE {{prefix}}jobs ADD COLUMN serial_key VARCHAR(300);
ALTER TABLE {{prefix}}history ADD COLUMN serial_key VARCHAR(300);
ALTER TABLE {{prefix}}keys ADD COLUMN tail_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin;
