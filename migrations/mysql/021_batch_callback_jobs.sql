-- Which job each of a batch's callbacks enqueued: see migrations/postgres/021_batch_callback_jobs.sql.
ALTER TABLE {{prefix}}batches ADD COLUMN callback_jobs JSON;
