-- Serial keys (issue 14): see migrations/postgres/009_serial_keys.sql.
ALTER TABLE {{prefix}}jobs ADD serial_key NVARCHAR(300);
ALTER TABLE {{prefix}}history ADD serial_key NVARCHAR(300);
ALTER TABLE {{prefix}}keys ADD tail_id CHAR(36) COLLATE Latin1_General_BIN2;
