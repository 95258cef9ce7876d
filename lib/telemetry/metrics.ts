/**
 * Metrics: counters and histograms of what this process does with jobs, and gauges of every
 * queue read from the database when a reader collects. Recorded through `@opentelemetry/api`
 * (an optional peer: the app's MeterProvider decides where they go) and, once someone asks for
 * it, into a prom-client Registry of this instance that the admin serves as `GET metrics`. Both
 * see the same calls, so their numbers agree.
 *
 * Without a registered MeterProvider the API's meter is a no-op: each call costs a no-op call, and
 * no gauge is ever read. OpenTelemetry names follow its conventions (dotted, units apart:
 * `sqljobs.jobs.completed` in `{job}`, durations in seconds); the Prometheus names are what an
 * OpenTelemetry Prometheus exporter would make of them (`sqljobs_jobs_completed_total`).
 */
import { createRequire } from 'node:module';
import { registeredOtelApi } from './optional.ts';
import type * as OtelApi from '@opentelemetry/api';
import type * as PromClient from 'prom-client';
import type { EnqueueResult, NewJobRow } from '../model.ts';
import type { ClaimedJob, QueueLive, RescuedJob } from '../driver/store.ts';
import type { AttemptOutcome } from '../worker/executor.ts';

type Api = typeof OtelApi;
type Label = 'queue' | 'name' | 'outcome';
/** A measurement's labels, by their Prometheus names. */
type Labels = Partial<Record<Label, string>>;

const JOB: readonly Label[] = ['queue', 'name'];
const JOB_OUTCOME: readonly Label[] = ['queue', 'name', 'outcome'];

/** What each counter counts; a Prometheus counter is `sqljobs_jobs_<key>_total`, an OpenTelemetry one `sqljobs.jobs.<key>`. */
const COUNTERS = {
  enqueued: { labels: JOB, help: 'Jobs this process enqueued, once committed (a request\'s when it commits; not those inside the app\'s own transaction, nor a refId, unique or debounce key that found its live job)' },
  started: { labels: JOB, help: 'Attempts started in this process' },
  completed: { labels: JOB, help: 'Attempts in this process that completed their job' },
  failed: { labels: JOB, help: 'Attempts in this process that failed their job for good (no attempt left, or DiscardJob)' },
  retried: { labels: JOB, help: 'Attempts in this process that failed and left their job to be retried' },
  rescued: { labels: JOB_OUTCOME, help: 'Jobs this process\'s sweeper took back from a worker that stopped sending heartbeats (outcome: retrying or failed, as on the duration)' },
} as const;
type CounterName = keyof typeof COUNTERS;

/** Histograms in seconds: `sqljobs_jobs_<key>_seconds` and `sqljobs.jobs.<key>`. */
const HISTOGRAMS = {
  start_latency: { labels: JOB, help: 'Seconds from when a job became due (its run_at) to its start (its started_at), both by the database clock' },
  duration: { labels: JOB_OUTCOME, help: 'Seconds of an attempt in this process, from its start to its outcome written, by outcome' },
} as const;
type HistogramName = keyof typeof HISTOGRAMS;

/**
 * OpenTelemetry's messaging duration boundaries (5 ms to 10 s), then on to an hour: a job may
 * run that long, and a queue may keep a due job waiting that long.
 */
export const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60, 300, 900, 3600];

/** Per queue, read from the database at collection: `sqljobs_queue_<key>` (`_seconds` for the age) and `sqljobs.queue.<key>`. */
const GAUGES = {
  depth: { unit: '{job}', help: 'Due pending jobs per queue (their run time has come), in the database', value: (q: QueueLive) => q.due },
  oldest_due_age: { unit: 's', help: 'Seconds the oldest due pending job of each queue has waited past its run time (0: none waits), database clock', value: (q: QueueLive) => (q.oldestDueAgeMs ?? 0) / 1000 },
  running: { unit: '{job}', help: 'Running jobs per queue, in every process', value: (q: QueueLive) => q.running },
} as const;
type GaugeName = keyof typeof GAUGES;

/** The OpenTelemetry attribute of each label: the messaging conventions' queue, and the names the spans use. */
const ATTRIBUTES: Record<Label, string> = { queue: 'messaging.destination.name', name: 'sqljobs.job.name', outcome: 'sqljobs.job.outcome' };

const SCOPE = 'sqljobs';


/** Where measurements go: OpenTelemetry instruments, or a prom-client registry. */
interface Sink {
  count(counter: CounterName, labels: Labels): void;
  observe(histogram: HistogramName, seconds: number, labels: Labels): void;
}

/** Emits every gauge's value per queue, from one read of the database. */
type GaugeCollector = (emit: (gauge: GaugeName, value: number, labels: Labels) => void) => Promise<void>;

/** What the worker holds for one attempt: its end is measured and counted. */
export interface AttemptMeasure {
  end(outcome: AttemptOutcome): void;
}

const UNMEASURED: AttemptMeasure = { end: () => {} };

/** What the worker measures attempts with. */
export type AttemptMetrics = Pick<JobMetrics, 'attempt'>;
/** For a worker made without metrics. */
export const NO_METRICS: AttemptMetrics = { attempt: () => UNMEASURED };

/** The counters an attempt's outcome adds to (snoozed, aborted, lost and unwritten count in none: only in duration). */
const OUTCOME_COUNTERS: Partial<Record<AttemptOutcome['kind'], CounterName>> = { completed: 'completed', failed: 'failed', retrying: 'retried' };

/**
 * The metrics of one Jobs instance. A throw from the app's meter provider, views or exporters is
 * reported and changes nothing: a job is never failed by its metrics.
 */
export class JobMetrics {
  private readonly sinks: Sink[] = [];
  private readonly figures: QueueFigures;
  private prometheus: PrometheusSink | null = null;
  private otelSink: OtelSink | null = null;
  private closed = false;

  constructor(
    private readonly enabled: boolean,
    readQueues: () => Promise<QueueLive[]>,
    private readonly report: (err: unknown) => void,
    /** The API to use (tests); by default the app's, once it registered something with it. */
    private readonly givenApi?: Api | null,
  ) {
    this.figures = new QueueFigures(readQueues, report);
    this.otel();
  }

  /** The OpenTelemetry sink, made once the API is there to record into (see registeredOtelApi). */
  private otel(): OtelSink | null {
    if (this.otelSink || !this.enabled || this.closed) return this.otelSink;
    const api = this.givenApi !== undefined ? this.givenApi : registeredOtelApi();
    if (!api) return null;
    this.otelSink = new OtelSink(api, (emit) => this.collectGauges(emit), this.report);
    this.sinks.push(this.otelSink);
    return this.otelSink;
  }

  /** Jobs an enqueue wrote and committed: each new one counts (one that existed was counted when it was made). */
  enqueued(rows: NewJobRow[], results: EnqueueResult[]): void {
    if (!this.recording()) return;
    rows.forEach((row, i) => {
      if (!results[i].existed) this.count('enqueued', { queue: row.queue, name: row.name });
    });
  }

  /**
   * An attempt launched here: counted, with how long its job waited. The wait is from run_at, the
   * time the job became due, not created_at: a delayed job, a retry after its backoff or a snoozed
   * job waits there on purpose, and that wait says nothing about whether workers keep up.
   */
  attempt(job: ClaimedJob): AttemptMeasure {
    if (!this.recording()) return UNMEASURED;
    const labels = { queue: job.queue, name: job.name };
    this.count('started', labels);
    if (job.startedAt) this.observe('start_latency', Math.max(0, job.startedAt.getTime() - job.runAt.getTime()) / 1000, labels);
    const t0 = performance.now();
    return {
      end: (outcome) => {
        const counter = OUTCOME_COUNTERS[outcome.kind];
        if (counter) this.count(counter, labels);
        this.observe('duration', (performance.now() - t0) / 1000, { ...labels, outcome: outcome.kind });
      },
    };
  }

  rescued(job: RescuedJob): void {
    // The attempt outcomes' words (the duration's outcome label), so that dashboards join on them.
    if (this.recording()) this.count('rescued', { queue: job.queue, name: job.name, outcome: job.outcome === 'retry' ? 'retrying' : job.outcome });
  }

  /** This instance's prom-client registry, made at the first call (it counts from then); null with `metrics: false`. */
  registry(): PromClient.Registry | null {
    if (!this.enabled) return null;
    if (!this.prometheus) {
      this.prometheus = new PrometheusSink((emit) => this.collectGauges(emit));
      if (!this.closed) this.sinks.push(this.prometheus);
    }
    return this.prometheus.registry;
  }

  /** Stop recording, and reading the database for gauges (the instance is closing). */
  close(): void {
    this.closed = true;
    this.sinks.length = 0;
    this.figures.close();
    this.otelSink?.detach();
  }

  /** Whether anything records: without a MeterProvider and a registry, a measurement costs this look alone. */
  private recording(): boolean {
    if (this.closed) return false;
    try {
      // Asked first, even with a registry: a MeterProvider registered later joins the sinks here.
      const otel = this.otel();
      if (this.prometheus) return true;
      return otel?.recording() ?? false;
    } catch (err) {
      this.report(err);
      return this.prometheus !== null;
    }
  }

  private count(counter: CounterName, labels: Labels): void {
    for (const sink of this.sinks) this.contained(() => sink.count(counter, labels));
  }

  private observe(histogram: HistogramName, seconds: number, labels: Labels): void {
    for (const sink of this.sinks) this.contained(() => sink.observe(histogram, seconds, labels));
  }

  private async collectGauges(emit: (gauge: GaugeName, value: number, labels: Labels) => void): Promise<void> {
    const queues = await this.figures.get();
    for (const q of queues ?? []) {
      for (const gauge of Object.keys(GAUGES) as GaugeName[]) emit(gauge, GAUGES[gauge].value(q), { queue: q.queue });
    }
  }

  private contained(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.report(err);
    }
  }
}

/**
 * The live per-queue figures for the gauges: one statement per collection, shared by every reader
 * that collects meanwhile or within the next second (an OpenTelemetry reader and a Prometheus
 * scrape at once read once). A failed read is reported, and the gauges show nothing that time. So
 * does a read that has not answered within FIGURES_WAIT_MS (a database that went silent: a scrape
 * waited for it without end, and every later scrape for the same read): the collection goes on
 * without gauges, and the next one starts a read of its own, up to MAX_READS_UNANSWERED at once.
 */
class QueueFigures {
  /** The latest read: when it started and answered (`at` Infinity while it is under way). */
  private last: FiguresRead | null = null;
  private unanswered = 0;
  private closed = false;

  constructor(
    private readonly read: () => Promise<QueueLive[]>,
    private readonly report: (err: unknown) => void,
  ) {}

  get(): Promise<QueueLive[] | null> {
    if (this.closed) return Promise.resolve(null);
    const now = performance.now();
    const last = this.last;
    const answeredLately = last !== null && last.at !== Infinity && now - last.at < FIGURES_REUSED_MS;
    const underWay = last !== null && last.at === Infinity && (now - last.started < FIGURES_WAIT_MS.ms || this.unanswered >= MAX_READS_UNANSWERED);
    if (last && (answeredLately || underWay)) {
      return this.bounded(last);
    }
    const next: FiguresRead = { started: now, at: Infinity, figures: Promise.resolve(null) };
    this.unanswered++;
    next.figures = this.read().catch((err: unknown) => {
      this.report(err);
      return null;
    }).finally(() => {
      next.at = performance.now();
      this.unanswered--;
    });
    this.last = next;
    return this.bounded(next);
  }

  /** The read's figures, or null once it has been under way for FIGURES_WAIT_MS. */
  private bounded(read: FiguresRead): Promise<QueueLive[] | null> {
    if (read.at !== Infinity) return read.figures;
    const left = read.started + FIGURES_WAIT_MS.ms - performance.now();
    if (left <= 0) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.closed) return resolve(null);
        this.report(new Error(`metrics: the queues' figures (one read of the jobs table) did not answer within ${FIGURES_WAIT_MS.ms} ms: this collection has no gauges`));
        resolve(null);
      }, left);
      timer.unref?.();
      void read.figures.then((figures) => {
        clearTimeout(timer);
        resolve(figures);
      });
    });
  }

  close(): void {
    this.closed = true;
  }
}

interface FiguresRead {
  started: number;
  at: number;
  figures: Promise<QueueLive[] | null>;
}

/** How long one read of the queues serves further collections, ms. */
const FIGURES_REUSED_MS = 1000;
/** How long a collection waits for the queues' figures, ms (Prometheus gives a scrape 10 s by default). */
export const FIGURES_WAIT_MS = { ms: 3000 };
/** Reads of the figures left unanswered at once before a collection stops starting new ones (each may hold a connection). */
const MAX_READS_UNANSWERED = 2;

interface OtelInstruments {
  /** Made by the API's no-op meter (no MeterProvider registered): nothing is recorded. */
  noop: boolean;
  counters: Record<CounterName, OtelApi.Counter>;
  histograms: Record<HistogramName, OtelApi.Histogram>;
  /** Stops the gauges' callback on the provider the instruments came from. */
  detach(): void;
}

/**
 * Instruments of the global MeterProvider, made again when the app registers another one (the
 * API has no proxy provider, so instruments made before the app's provider would stay no-ops).
 */
class OtelSink implements Sink {
  private provider: OtelApi.MeterProvider | null = null;
  private instruments: OtelInstruments | null = null;
  /** The class of the API's no-op counters. */
  private readonly noopCounter: abstract new (...args: never[]) => unknown;

  constructor(
    private readonly api: Api,
    private readonly collect: GaugeCollector,
    private readonly report: (err: unknown) => void,
  ) {
    this.noopCounter = (api.createNoopMeter().createCounter('noop') as object).constructor as abstract new (...args: never[]) => unknown;
    try {
      this.current();
    } catch (err) {
      report(err);
    }
  }

  // Beside a Prometheus registry, a no-op provider is still asked: no attributes are built for it.
  count(counter: CounterName, labels: Labels): void {
    const instruments = this.current();
    if (!instruments.noop) instruments.counters[counter].add(1, attributes(labels));
  }

  observe(histogram: HistogramName, seconds: number, labels: Labels): void {
    const instruments = this.current();
    if (!instruments.noop) instruments.histograms[histogram].record(seconds, attributes(labels));
  }

  /** Whether the global MeterProvider records (the API's default one does not). */
  recording(): boolean {
    return !this.current().noop;
  }

  detach(): void {
    this.instruments?.detach();
    this.instruments = null;
    this.provider = null;
  }

  private current(): OtelInstruments {
    const provider = this.api.metrics.getMeterProvider();
    if (provider !== this.provider || !this.instruments) {
      this.detach();
      this.instruments = this.make(provider.getMeter(SCOPE));
      this.provider = provider;
    }
    return this.instruments;
  }

  private make(meter: OtelApi.Meter): OtelInstruments {
    const { ValueType } = this.api;
    const counters = mapKeys(COUNTERS, (key, c) => meter.createCounter(`sqljobs.jobs.${key}`, { description: c.help, unit: '{job}', valueType: ValueType.INT }));
    const histograms = mapKeys(HISTOGRAMS, (key, h) => meter.createHistogram(`sqljobs.jobs.${key}`, { description: h.help, unit: 's', advice: { explicitBucketBoundaries: BUCKETS } }));
    const gauges = mapKeys(GAUGES, (key, g) => meter.createObservableGauge(`sqljobs.queue.${key}`, { description: g.help, unit: g.unit }));
    const observables = Object.values(gauges);
    const callback: OtelApi.BatchObservableCallback = async (result) => {
      try {
        await this.collect((gauge, value, labels) => result.observe(gauges[gauge], value, attributes(labels)));
      } catch (err) {
        this.report(err);
      }
    };
    meter.addBatchObservableCallback(callback, observables);
    const noop = counters.started instanceof this.noopCounter;
    return { noop, counters, histograms, detach: () => meter.removeBatchObservableCallback(callback, observables) };
  }
}

function attributes(labels: Labels): OtelApi.Attributes {
  const out: OtelApi.Attributes = {};
  for (const key of Object.keys(labels) as Label[]) out[ATTRIBUTES[key]] = labels[key];
  return out;
}

function mapKeys<K extends string, V, R>(table: Record<K, V>, fn: (key: K, value: V) => R): Record<K, R> {
  return Object.fromEntries((Object.keys(table) as K[]).map((k) => [k, fn(k, table[k])])) as Record<K, R>;
}

/**
 * The same metrics in a prom-client Registry of this instance (never prom-client's global one: the
 * app may have its own there). Gauges are read when the registry is collected (a scrape).
 */
class PrometheusSink implements Sink {
  readonly registry: PromClient.Registry;
  private readonly counters: Record<CounterName, PromClient.Counter<Label>>;
  private readonly histograms: Record<HistogramName, PromClient.Histogram<Label>>;

  constructor(collect: GaugeCollector) {
    // A dependency of sqljobs, loaded only by the instances that serve or hand out a registry.
    const prom = createRequire(import.meta.url)('prom-client') as typeof PromClient;
    const registry = new prom.Registry();
    const registers = [registry];
    this.registry = registry;
    this.counters = mapKeys(COUNTERS, (key, c) => new prom.Counter({ name: `sqljobs_jobs_${key}_total`, help: c.help, labelNames: c.labels, registers }));
    this.histograms = mapKeys(HISTOGRAMS, (key, h) => new prom.Histogram({ name: `sqljobs_jobs_${key}_seconds`, help: h.help, labelNames: h.labels, buckets: BUCKETS, registers }));
    // Each gauge's collect asks for the figures; the scrape collects them at once, so one read serves all three.
    mapKeys(GAUGES, (key, g) => new prom.Gauge({
      name: `sqljobs_queue_${key}${g.unit === 's' ? '_seconds' : ''}`,
      help: g.help,
      labelNames: ['queue'],
      registers,
      async collect() {
        this.reset();
        await collect((gauge, value, labels) => {
          if (gauge === key) this.set(labels, value);
        });
      },
    }));
  }

  count(counter: CounterName, labels: Labels): void {
    this.counters[counter].inc(labels);
  }

  observe(histogram: HistogramName, seconds: number, labels: Labels): void {
    this.histograms[histogram].observe(labels, seconds);
  }
}
