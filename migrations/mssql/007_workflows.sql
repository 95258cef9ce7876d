-- Workflows (issue 13): dependencies between jobs, callbacks and batches. See
-- migrations/postgres/007_workflows.sql for what each column and table is for.
-- (T-SQL: ADD without the COLUMN keyword.)
ALTER TABLE {{prefix}}jobs ADD flow SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}jobs ADD parents_left INT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}jobs ADD callbacks NVARCHAR(MAX);
ALTER TABLE {{prefix}}jobs ADD callback_batch NVARCHAR(500);
ALTER TABLE {{prefix}}history ADD flow SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}history ADD callbacks NVARCHAR(MAX);
ALTER TABLE {{prefix}}history ADD callback_batch NVARCHAR(500);

CREATE TABLE {{prefix}}deps (
  child_id CHAR(36) COLLATE Latin1_General_BIN2 NOT NULL,
  parent_id CHAR(36) COLLATE Latin1_General_BIN2 NOT NULL,
  position INT NOT NULL,
  PRIMARY KEY (child_id, parent_id)
);
CREATE INDEX {{prefix}}deps_parent ON {{prefix}}deps (parent_id);

CREATE TABLE {{prefix}}batches (
  id NVARCHAR(500) NOT NULL PRIMARY KEY,
  total INT NOT NULL,
  finished INT NOT NULL DEFAULT 0,
  failed INT NOT NULL DEFAULT 0,
  callbacks NVARCHAR(MAX),
  fired SMALLINT NOT NULL DEFAULT 0,
  created_at DATETIME2(3) NOT NULL,
  finished_at DATETIME2(3)
);

CREATE INDEX {{prefix}}jobs_batch ON {{prefix}}jobs (batch_id) WHERE batch_id IS NOT NULL;
