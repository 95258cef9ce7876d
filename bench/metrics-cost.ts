/**
 * What metrics add to one job (its enqueue, start and outcome, the calls the facade and the worker
 * make), in ns, median of 5 rounds of 200,000: with `metrics: false`, with no MeterProvider (the
 * API's no-op one), with the Prometheus registry made, and with the OpenTelemetry SDK's
 * MeterProvider. `node --import tsx bench/metrics-cost.ts`
 */
import { metrics } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { JobMetrics } from '../lib/telemetry/metrics.ts';
import type { ClaimedJob } from '../lib/driver/store.ts';
import type { EnqueueResult, NewJobRow } from '../lib/model.ts';

const ROUND = 200_000;
const job = { id: 'x', queue: 'default', name: 'ok', runAt: new Date(Date.now() - 5), startedAt: new Date() } as ClaimedJob;
const rows = [{ queue: 'default', name: 'ok' }] as NewJobRow[];
const results: EnqueueResult[] = [{ id: 'x', existed: false }];

function oneJob(m: JobMetrics): void {
  m.enqueued(rows, results);
  m.attempt(job).end({ kind: 'completed', result: null });
}

function nsPerJob(m: JobMetrics): number {
  for (let i = 0; i < ROUND / 10; i++) oneJob(m);
  const rounds: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ROUND; i++) oneJob(m);
    rounds.push(Number(process.hrtime.bigint() - t0) / ROUND);
  }
  return Math.round(rounds.sort((a, b) => a - b)[2]);
}

class PullReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const make = (enabled: boolean) => new JobMetrics(enabled, async () => [], () => undefined);
const scraped = make(true);
scraped.registry();
console.log(`metrics: false            ${nsPerJob(make(false))} ns/job`);
console.log(`no MeterProvider          ${nsPerJob(make(true))} ns/job`);
console.log(`Prometheus registry made  ${nsPerJob(scraped)} ns/job`);
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [new PullReader()] }));
console.log(`OpenTelemetry SDK         ${nsPerJob(make(true))} ns/job`);
