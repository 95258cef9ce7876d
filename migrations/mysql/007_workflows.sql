-- Workflows (issue 13): dependencies between jobs, callbacks and batches. See
-- migrations/postgres/007_workflows.sql for what each column and table is for.
-- (MySQL has no partial index: every live job takes an entry in jobs_batch.)
ALTER TABLE {{prefix}}jobs ADD COLUMN flow SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}jobs ADD COLUMN parents_left INT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}jobs ADD COLUMN callbacks JSON;
ALTER TABLE {{prefix}}jobs ADD COLUMN callback_batch VARCHAR(255);
ALTER TABLE {{prefix}}history ADD COLUMN flow SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}history ADD COLUMN callbacks JSON;
ALTER TABLE {{prefix}}history ADD COLUMN callback_batch VARCHAR(255);

CREATE TABLE {{prefix}}deps (
  child_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  parent_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  position INT NOT NULL,
  PRIMARY KEY (child_id, parent_id)
) ENGINE = InnoDB;
CREATE INDEX {{prefix}}deps_parent ON {{prefix}}deps (parent_id);

CREATE TABLE {{prefix}}batches (
  id VARCHAR(255) NOT NULL PRIMARY KEY,
  total INT NOT NULL,
  finished INT NOT NULL DEFAULT 0,
  failed INT NOT NULL DEFAULT 0,
  callbacks JSON,
  fired SMALLINT NOT NULL DEFAULT 0,
  created_at DATETIME(3) NOT NULL,
  finished_at DATETIME(3)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX {{prefix}}jobs_batch ON {{prefix}}jobs (batch_id);
