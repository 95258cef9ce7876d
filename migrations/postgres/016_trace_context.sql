-- The trace context of the enqueue that made a job (issue 16, OpenTelemetry): the propagation
-- carrier the app's registered propagator wrote (W3C traceparent and tracestate by default) as a
-- JSON object of strings, or NULL when no tracer was recording. The attempt that runs the job links
-- its process span to it (or is parented by it), in whichever process claims it. Live and history
-- tables alike: a finished job keeps the trace it belonged to.
ALTER TABLE {{prefix}}jobs ADD COLUMN trace_context text;
ALTER TABLE {{prefix}}history ADD COLUMN trace_context text;
