/**
 * Reading sqljobs' metrics as an app would: an OpenTelemetry SDK MeterProvider with an in-memory
 * reader registered as the global provider, and the Prometheus text parsed by a real parser. Both
 * read into one shape, by Prometheus name and series (`name=…,queue=…`), so they compare directly.
 */
import { metrics } from '@opentelemetry/api';
import { AggregationTemporality, DataPointType, InstrumentType, MeterProvider, MetricReader, type Histogram } from '@opentelemetry/sdk-metrics';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';

/** Per metric (Prometheus name; a histogram as `_count` and `_sum`), per series: its value. */
export type Snapshot = Record<string, Record<string, number>>;

/**
 * A pull reader: collect() when the test asks, as a Prometheus exporter would. Gauges are read as
 * deltas, so that a collection shows what this one observed (cumulative, the SDK repeats a
 * series it no longer hears).
 */
class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: (type) => (type === InstrumentType.OBSERVABLE_GAUGE ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE) });
  }

  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** The OpenTelemetry attribute of each Prometheus label (as documented in the README). */
const LABELS: Record<string, string> = { 'messaging.destination.name': 'queue', 'sqljobs.job.name': 'name', 'sqljobs.job.outcome': 'outcome' };

function seriesKey(labels: Record<string, unknown>): string {
  return Object.keys(labels).sort().map((k) => `${k}=${String(labels[k])}`).join(',');
}

/** The global MeterProvider of a test, with its reader; stop() unregisters it. */
export function otelMetrics(): { collect(): Promise<Snapshot>; stop(): Promise<void> } {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  metrics.disable();
  metrics.setGlobalMeterProvider(provider);
  return {
    collect: async () => {
      const { resourceMetrics, errors } = await reader.collect();
      if (errors.length) throw new AggregateError(errors, 'the OpenTelemetry collection reported errors');
      const out: Snapshot = {};
      for (const metric of resourceMetrics.scopeMetrics.filter((s) => s.scope.name === 'sqljobs').flatMap((s) => s.metrics)) {
        const { name, unit } = metric.descriptor;
        const base = name.replace(/\./g, '_') + (unit === 's' ? '_seconds' : '');
        for (const point of metric.dataPoints) {
          const labels = Object.fromEntries(Object.entries(point.attributes).map(([k, v]) => [LABELS[k] ?? k, v]));
          const key = seriesKey(labels);
          if (metric.dataPointType === DataPointType.HISTOGRAM) {
            const h = point.value as Histogram;
            (out[`${base}_count`] ??= {})[key] = h.count;
            (out[`${base}_sum`] ??= {})[key] = h.sum ?? 0;
          } else {
            const total = metric.dataPointType === DataPointType.SUM ? '_total' : '';
            (out[base + total] ??= {})[key] = point.value as number;
          }
        }
      }
      return out;
    },
    stop: async () => {
      metrics.disable();
      await provider.shutdown();
    },
  };
}

/**
 * The sqljobs metrics of a Prometheus text exposition, read by parse-prometheus-text-format.
 * That parser folds a histogram's series into one and drops their labels, so histograms are read
 * a second time from the same text without their TYPE line (as untyped samples: `_bucket`, `_sum`
 * and `_count`, each with its labels); their +Inf bucket must equal their count.
 */
export function parsePrometheus(text: string): Snapshot {
  const out: Snapshot = {};
  const histograms: string[] = [];
  for (const family of parsePrometheusTextFormat(text)) {
    if (!family.name.startsWith('sqljobs_')) continue;
    if (family.type === 'HISTOGRAM') {
      histograms.push(family.name);
      continue;
    }
    for (const sample of family.metrics) (out[family.name] ??= {})[seriesKey(sample.labels ?? {})] = Number(sample.value);
  }
  const untyped = text.replace(new RegExp(`^# TYPE (${histograms.join('|')}) histogram$`, 'gm'), '');
  const infinite: Record<string, number> = {};
  for (const family of histograms.length ? parsePrometheusTextFormat(untyped) : []) {
    const m = /^(.*)_(bucket|sum|count)$/.exec(family.name);
    if (!m || !histograms.includes(m[1])) continue;
    for (const sample of family.metrics) {
      const { le, ...labels } = sample.labels ?? {};
      const key = seriesKey(labels);
      if (m[2] !== 'bucket') (out[family.name] ??= {})[key] = Number(sample.value);
      else if (le === '+Inf') infinite[`${m[1]}_count/${key}`] = Number(sample.value);
    }
  }
  for (const [at, n] of Object.entries(infinite)) {
    const [name, key] = at.split('/');
    if (out[name]?.[key] !== n) throw new Error(`${name}{${key}}: the +Inf bucket holds ${n}, the count ${out[name]?.[key]}`);
  }
  return out;
}
