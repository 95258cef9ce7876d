/**
 * OpenTelemetry traces, through @opentelemetry/api only (an optional peer; no SDK here). An enqueue
 * is a `send <queue>` span in the caller's active trace; its context is stored with each job it
 * wrote (the `trace_context` column); each attempt, in whichever process claims it, is a
 * `process <queue>` span linked to that context (or its child, with `tracing: { processSpan:
 * 'child' }`), and the handler runs inside it, so the handler's own spans nest under it. Attribute
 * names follow OpenTelemetry's messaging semantic conventions (still incubating there, hence
 * written out here rather than imported).
 *
 * Without a registered tracer provider the API hands out non-recording spans: nothing is stored
 * and the handler runs in no extra context.
 */
import { registeredOtelApi } from './optional.ts';
import type * as OtelApi from '@opentelemetry/api';
import type { NewJobRow } from '../model.ts';
import type { ClaimedJob } from '../driver/store.ts';
import type { AttemptOutcome } from '../worker/executor.ts';
import { safeString } from '../text.ts';

export type { ProcessSpanRelation, TracingOptions } from './options.ts';
import type { ProcessSpanRelation } from './options.ts';

type Api = typeof OtelApi;


const SYSTEM = 'sqljobs';
const SCOPE = 'sqljobs';

/** What the worker holds for one attempt: where its handler runs, and how it ends. */
export interface AttemptTrace {
  /** fn(a, b) inside the attempt's context (arguments passed on, so the caller makes no closure per attempt). */
  run<A, B, T>(fn: (a: A, b: B) => T, a: A, b: B): T;
  end(outcome: AttemptOutcome): void;
}

const UNTRACED: AttemptTrace = { run: (fn, a, b) => fn(a, b), end: () => {} };

/**
 * The app's tracer provider, samplers and span processors are its code: a throw from them is
 * reported and the job goes on untraced, never failed by its trace.
 */
export class Tracing {
  constructor(
    private readonly relation: ProcessSpanRelation | null,
    private readonly report: (err: unknown) => void = () => {},
    /** The API to use (tests); by default the app's, once it registered something with it. */
    private readonly givenApi?: Api | null,
  ) {}

  private get api(): Api | null {
    if (this.givenApi !== undefined) return this.givenApi;
    return this.relation === null ? null : registeredOtelApi();
  }

  /**
   * Runs `write` (the enqueue's statement, synchronous or not) inside a `send` span, after stamping
   * each row with the span's context. A failed write is recorded on the span.
   */
  send<T>(rows: NewJobRow[], write: () => T): T {
    const api = this.api;
    const span = api && rows.length && this.provided(api) ? this.contained(() => this.sendSpan(api, rows), null) : null;
    if (!span) return write();
    let result: T;
    try {
      result = write();
    } catch (err) {
      this.fail(span, err);
      throw err;
    }
    if (result instanceof Promise) {
      return result.then(
        (value) => (this.contained(() => span.end(), undefined), value),
        (err: unknown) => {
          this.fail(span, err);
          throw err;
        },
      ) as T;
    }
    this.contained(() => span.end(), undefined);
    return result;
  }

  /**
   * The enqueue's span, its context stamped on each row; null when it has no valid context (no
   * provider, no trace around). A span sampled out still has one: stored, it carries the decision
   * to the job's attempts (a ParentBased sampler drops them too, in 'child' mode).
   */
  private sendSpan(api: Api, rows: NewJobRow[]): OtelApi.Span | null {
    const queues = new Set(rows.map((r) => r.queue));
    const queue = queues.size === 1 ? rows[0].queue : null;
    const span = api.trace.getTracer(SCOPE).startSpan(queue ? `send ${queue}` : 'send', {
      kind: api.SpanKind.PRODUCER,
      attributes: {
        'messaging.system': SYSTEM,
        'messaging.operation.name': 'send',
        'messaging.operation.type': 'send',
        ...(queue ? { 'messaging.destination.name': queue } : {}),
        ...(rows.length === 1 ? { 'messaging.message.id': rows[0].id, 'sqljobs.job.name': rows[0].name } : { 'messaging.batch.message_count': rows.length }),
      },
    });
    if (!api.trace.isSpanContextValid(span.spanContext())) return null;
    const carrier: Record<string, string> = {};
    try {
      api.propagation.inject(api.trace.setSpan(api.context.active(), span), carrier);
    } catch (err) {
      span.end(); // the app's propagator threw: the enqueue goes on, its span ended, nothing stored
      throw err;
    }
    const stored = storedCarrier(carrier);
    for (const row of rows) row.traceContextJson = stored;
    return span;
  }

  /** The span of one attempt of a claimed job. Its base is the root context: a claim is never part of whatever woke the worker. */
  attempt(job: ClaimedJob, workerId: string): AttemptTrace {
    const api = this.api;
    if (!api) return UNTRACED;
    if (!this.provided(api)) return this.rooted(api);
    return this.contained(() => this.attemptSpan(api, job, workerId), this.rooted(api));
  }

  /**
   * Whether the app registered a tracer provider: without one, enqueues and attempts build no
   * span, attributes or carrier (the hot path pays one comparison). The global provider is a proxy
   * whose delegate is the API's shared no-op provider until one is registered.
   */
  private provided(api: Api): boolean {
    const global = api.trace.getTracerProvider();
    return !(global instanceof api.ProxyTracerProvider) || global.getDelegate() !== this.noop(api);
  }

  private noopProvider: OtelApi.TracerProvider | null = null;

  private noop(api: Api): OtelApi.TracerProvider {
    return (this.noopProvider ??= new api.ProxyTracerProvider().getDelegate());
  }

  /** No span of ours: the handler still runs in the root context, never in one lent by whatever woke the worker. */
  private rooted(api: Api): AttemptTrace {
    return (this.rootedTrace ??= { run: (fn, a, b) => api.context.with(api.ROOT_CONTEXT, fn, undefined, a, b), end: () => {} });
  }

  /** The same for every attempt without a span of ours: made once. */
  private rootedTrace: AttemptTrace | null = null;

  private attemptSpan(api: Api, job: ClaimedJob, workerId: string): AttemptTrace {
    const enqueued = this.enqueueContext(api, job.traceContext);
    const child = this.relation === 'child' && enqueued !== null;
    const span = api.trace.getTracer(SCOPE).startSpan(
      `process ${job.queue}`,
      {
        kind: api.SpanKind.CONSUMER,
        attributes: {
          'messaging.system': SYSTEM,
          'messaging.operation.name': 'process',
          'messaging.operation.type': 'process',
          'messaging.destination.name': job.queue,
          'messaging.message.id': job.id,
          'messaging.client.id': workerId,
          'sqljobs.job.name': job.name,
          'sqljobs.job.attempt': job.attempts,
        },
        links: enqueued && !child ? [{ context: enqueued }] : [],
        root: !child,
      },
      child ? api.trace.setSpanContext(api.ROOT_CONTEXT, enqueued) : api.ROOT_CONTEXT,
    );
    if (!api.trace.isSpanContextValid(span.spanContext())) return this.rooted(api);
    // Sampled out too, the handler runs under it: its own spans follow the same decision.
    const active = api.trace.setSpan(api.ROOT_CONTEXT, span);
    return {
      run: (fn, a, b) => api.context.with(active, fn, undefined, a, b),
      end: (outcome) => this.contained(() => (span.isRecording() ? this.endAttempt(span, outcome) : span.end()), undefined),
    };
  }

  /** The enqueue's span context from the stored carrier, or null (none stored, or unreadable: a trace is never worth failing a job). */
  private enqueueContext(api: Api, stored: string | null): OtelApi.SpanContext | null {
    if (!stored) return null;
    try {
      const carrier = JSON.parse(stored) as Record<string, string>;
      const sc = api.trace.getSpanContext(api.propagation.extract(api.ROOT_CONTEXT, carrier));
      return sc && api.trace.isSpanContextValid(sc) ? sc : null;
    } catch {
      return null;
    }
  }

  private endAttempt(span: OtelApi.Span, outcome: AttemptOutcome): void {
    const api = this.api!;
    span.setAttribute('sqljobs.job.outcome', outcome.kind);
    // error.type: the conventions' low-cardinality name of a failure (the error's class, or how the attempt was cut short).
    const failed = (type: string, message: string) => {
      span.setAttribute('error.type', type);
      span.setStatus({ code: api.SpanStatusCode.ERROR, message });
    };
    switch (outcome.kind) {
      case 'retrying':
      case 'failed':
      case 'unwritten':
        span.recordException({ name: outcome.error.name ?? 'Error', message: outcome.error.message, stack: outcome.error.stack });
        failed(outcome.error.name || '_OTHER', outcome.error.message);
        if (outcome.kind === 'retrying') span.setAttribute('sqljobs.job.retry_delay_ms', outcome.delayMs);
        break;
      case 'aborted':
        failed(`aborted:${outcome.reason}`, `aborted: ${outcome.reason}`);
        break;
      case 'lost':
        failed('lost', 'lost: another worker or a cancel owns the job now');
        break;
    }
    span.end();
  }

  private fail(span: OtelApi.Span, err: unknown): void {
    this.contained(() => {
      const message = err instanceof Error ? err.message : safeString(err);
      span.setAttribute('error.type', err instanceof Error ? err.name : '_OTHER');
      span.recordException(err instanceof Error ? err : message);
      span.setStatus({ code: this.api!.SpanStatusCode.ERROR, message });
      span.end();
    }, undefined);
  }

  private contained<T>(fn: () => T, fallback: T): T {
    try {
      return fn();
    } catch (err) {
      this.report(err);
      return fallback;
    }
  }
}

/** The trace_context column's size in characters (MySQL and SQL Server: VARCHAR(2000)), kept on every database. */
export const TRACE_CONTEXT_MAX = 2000;

/**
 * The carrier as stored: whole when it fits, else without baggage (W3C baggage may be 8 KB, set
 * by any upstream service: an enqueue failed on MySQL with "Data too long"), else only what links
 * the spans (traceparent, tracestate), else nothing: the job is never refused for its trace.
 */
export function storedCarrier(carrier: Record<string, string>): string | null {
  const tries = [carrier, withoutKeys(carrier, (k) => k.toLowerCase() !== 'baggage'), withoutKeys(carrier, (k) => k === 'traceparent' || k === 'tracestate')];
  for (const c of tries) {
    if (!Object.keys(c).length) return null;
    const json = JSON.stringify(c);
    if (json.length <= TRACE_CONTEXT_MAX) return json;
  }
  return null;
}

function withoutKeys(carrier: Record<string, string>, keep: (key: string) => boolean): Record<string, string> {
  return Object.fromEntries(Object.entries(carrier).filter(([k]) => keep(k)));
}
