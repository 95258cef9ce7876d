-- Which job each of a batch's callbacks enqueued: see migrations/postgres/021_batch_callback_jobs.sql.
-- (T-SQL: ADD without the COLUMN keyword.)
ALTER TABLE {{prefix}}batches ADD callback_jobs NVARCHAR(MAX);
