-- Which job each of a batch's callbacks enqueued, by option ({"onSuccess": "<job id>", …}),
-- written in the transaction that fires them: the admin's batch page links the callback job
-- itself, and jobs.batchStatus answers its id (callbackJobs). Null until one fires, and for
-- batches that fired before this migration (their page links the callback's name instead).
ALTER TABLE {{prefix}}batches ADD COLUMN callback_jobs json;
