-- Log lines and progress messages as long as maxOutputBytes allows (up to 64 MiB), as results and
-- payloads already are (JSON is LONGTEXT here). TEXT holds 64 KiB: a longer progress message was
-- refused, and a longer log line, written through INSERT … SELECT, was stored by MariaDB with its
-- length taken modulo 65,536 and no error (a line of 70,000 characters kept 4,464).
ALTER TABLE {{prefix}}logs MODIFY message LONGTEXT NOT NULL;
ALTER TABLE {{prefix}}jobs MODIFY progress_message LONGTEXT;
ALTER TABLE {{prefix}}history MODIFY progress_message LONGTEXT;
