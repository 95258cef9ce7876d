/** Tracing's settings, as types: the public declarations reach these without OpenTelemetry's API. */

/** How an attempt's process span relates to its enqueue: a link (its own trace; the conventions' default) or a child. */
export type ProcessSpanRelation = 'link' | 'child';

export interface TracingOptions {
  /** Default 'link'. */
  processSpan?: ProcessSpanRelation;
}
