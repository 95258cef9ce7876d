/**
 * OpenTelemetry traces through the public API, on every dialect (issue 16): spans per enqueue and
 * per attempt, what is stored with the job, retries, jobs enqueued by a handler, a tracer whose
 * processors throw, and nothing at all without a provider or with tracing off. Across processes:
 * test/integration/tracing.test.ts.
 */
import { expect } from 'chai';
import { AsyncLocalStorage } from 'node:async_hooks';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace';
import { createJobs } from '../../lib/index.ts';
import { forEachDialect, type TestDb } from '../helpers/dialects.ts';

const PRODUCER = 3;
const CONSUMER = 4;
const ERROR = 2;

const exporter = new InMemorySpanExporter();
/** Set by a test to make every span processor call throw (the app's code, as the library sees it). */
let processorThrows = false;
const throwing: SpanProcessor = {
  onStart: () => {
    if (processorThrows) throw new Error('a span processor that throws on start');
  },
  onEnd: () => {
    if (processorThrows) throw new Error('a span processor that throws on end');
  },
  forceFlush: async () => undefined,
  shutdown: async () => undefined,
};

function register(): void {
  trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [throwing, new SimpleSpanProcessor({ exporter })] }));
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}

function unregister(): void {
  trace.disable();
  context.disable();
  propagation.disable();
}

const spans = (kind: number, id?: string): ReadableSpan[] =>
  exporter.getFinishedSpans().filter((s) => s.kind === kind && (id === undefined || s.attributes['messaging.message.id'] === id));

async function storedContexts(t: TestDb, ids: string[]): Promise<(string | null)[]> {
  const marks = ids.map((_, i) => (t.dialect === 'postgres' ? `$${i + 1}` : t.dialect === 'mssql' ? `@p${i + 1}` : '?'));
  const rows = await t.query<{ id: string; trace_context: string | null }>(
    `SELECT id, trace_context FROM ${t.prefix}history WHERE id IN (${marks.join(', ')})`, ids);
  return ids.map((id) => rows.find((r) => String(r.id).toLowerCase() === id)?.trace_context ?? null);
}

forEachDialect('tracing', ({ fresh }) => {
  beforeEach(() => {
    exporter.reset();
    processorThrows = false;
    register();
  });
  afterEach(unregister);

  it('each attempt of a retried job is a process span linked to the one send span; the failed one records its error', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    let runs = 0;
    jobs.define('flaky', () => {
      if (++runs === 1) throw new Error('first attempt fails');
      return 'ok';
    }, { backoff: { type: 'fixed', baseMs: 10 } });
    const { id } = await trace.getTracer('app').startActiveSpan('request', async (request) => {
      const r = await jobs.enqueue('flaky', {});
      request.end();
      return r;
    });
    await jobs.start();
    await jobs.waitFor(id, { timeout: 20_000 }); // drain() would stop before the retry is due
    await jobs.stop();
    const [send] = spans(PRODUCER, id);
    expect(send.name).to.equal('send default');
    expect(send.parentSpanContext?.spanId, 'the caller\'s active span parents the send span').to.equal(exporter.getFinishedSpans().find((s) => s.name === 'request')!.spanContext().spanId);
    const attempts = spans(CONSUMER, id).sort((a, b) => Number(a.attributes['sqljobs.job.attempt']) - Number(b.attributes['sqljobs.job.attempt']));
    expect(attempts.map((s) => [s.attributes['sqljobs.job.attempt'], s.attributes['sqljobs.job.outcome']])).to.deep.equal([[1, 'retrying'], [2, 'completed']]);
    for (const a of attempts) {
      expect(a.links.map((l) => l.context.spanId)).to.deep.equal([send.spanContext().spanId]);
      expect(a.parentSpanContext, 'a trace of its own').to.equal(undefined);
    }
    expect(attempts[0].status).to.deep.equal({ code: ERROR, message: 'first attempt fails' });
    expect(attempts[0].events.map((e) => e.name)).to.deep.equal(['exception']);
    expect(attempts[0].attributes['sqljobs.job.retry_delay_ms']).to.be.a('number');
    expect(attempts[1].status.code).not.to.equal(ERROR);
    const [stored] = await storedContexts(t, [id]);
    expect(JSON.parse(stored!)).to.deep.equal({ traceparent: `00-${send.spanContext().traceId}-${send.spanContext().spanId}-01` });
  });

  it('enqueueMany is one send span counting its jobs, each job linked to it; a job a handler enqueues is sent under its process span', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    jobs.define('parent', async () => void (await jobs.enqueue('child', {}, { queue: 'children' })));
    jobs.define('child', () => 'ok');
    const ids = (await jobs.enqueueMany([1, 2, 3].map(() => ({ name: 'parent' as const, payload: {} })))).map((r) => r.id);
    await jobs.drain();
    const sends = spans(PRODUCER).filter((s) => s.attributes['messaging.batch.message_count'] !== undefined);
    expect(sends).to.have.length(1);
    expect(sends[0].attributes).to.deep.include({ 'messaging.batch.message_count': 3, 'messaging.destination.name': 'default' });
    for (const id of ids) {
      const [proc] = spans(CONSUMER, id);
      expect(proc.links.map((l) => l.context.spanId)).to.deep.equal([sends[0].spanContext().spanId]);
      const childSend = spans(PRODUCER).find((s) => s.parentSpanContext?.spanId === proc.spanContext().spanId);
      expect(childSend?.name, 'the send span of the job it enqueued').to.equal('send children');
      const childRun = spans(CONSUMER, String(childSend!.attributes['messaging.message.id']));
      expect(childRun[0].links[0].context.spanId).to.equal(childSend!.spanContext().spanId);
    }
  });

  it('a tracer whose processors throw is reported; enqueues and jobs go on', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50 } });
    const errors: unknown[] = [];
    jobs.on('error', (err) => errors.push(err));
    jobs.define('work', () => 'ok');
    processorThrows = true;
    const { id } = await jobs.enqueue('work', {});
    await jobs.drain();
    expect((await jobs.get(id))?.state).to.equal('completed');
    expect(errors.map((e) => (e as Error).message)).to.include('a span processor that throws on start');
  });

  it('a W3C baggage too large for the trace_context column is left out (the job is enqueued); a small one is kept', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    propagation.disable(); // a global is set once: the W3C trace context one, from register()
    propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
    const enqueueWith = (value: string) => {
      const baggage = propagation.createBaggage({ note: { value } });
      return context.with(propagation.setBaggage(context.active(), baggage), () => jobs.enqueue('work', {}));
    };
    // An upstream service may send up to 8 KB of baggage; MySQL and SQL Server store 2,000 characters.
    const big = await enqueueWith('x'.repeat(3000));
    const small = await enqueueWith('tiny');
    const stored = async (id: string) => {
      const marks = t.dialect === 'postgres' ? '$1' : t.dialect === 'mssql' ? '@p1' : '?';
      const [row] = await t.query<{ trace_context: string | null }>(`SELECT trace_context FROM ${t.prefix}jobs WHERE id = ${marks}`, [id]);
      return JSON.parse(String(row.trace_context)) as Record<string, string>;
    };
    const bigContext = await stored(big.id);
    expect(bigContext).to.have.property('traceparent');
    expect(bigContext).to.not.have.property('baggage');
    expect(await stored(small.id)).to.include({ baggage: 'note=tiny' });
  });

  it('without a registered provider, or with tracing: false, nothing is stored and the handler runs in no span', async () => {
    const t = await fresh();
    const runs: boolean[] = [];
    const handler = () => void runs.push(trace.getActiveSpan() !== undefined);
    const off = t.jobs({ tracing: false, worker: { pollInterval: 50 } });
    off.define('quiet', handler);
    const quiet = (await off.enqueue('quiet', {})).id;
    await off.drain();
    expect(exporter.getFinishedSpans(), 'tracing: false makes no span').to.have.length(0);
    unregister();
    const plain = t.jobs({ worker: { pollInterval: 50 } });
    plain.define('untraced', handler);
    const untraced = (await plain.enqueue('untraced', {})).id;
    await plain.drain();
    expect(await storedContexts(t, [quiet, untraced])).to.deep.equal([null, null]);
    expect(runs).to.deep.equal([false, false]);
  });

  it("a worker woken from inside a request never runs in the request's context: not its span, not its AsyncLocalStorage stores", async () => {
    const t = await fresh();
    const requestStore = new AsyncLocalStorage<string>();
    const seen: { store: string | undefined; span: string | undefined }[] = [];
    const handler = () => void seen.push({ store: requestStore.getStore(), span: trace.getActiveSpan()?.spanContext().spanId });
    const untraced = t.jobs({ tracing: false, worker: { pollInterval: 60_000 } });
    untraced.define('a', handler);
    const traced = t.jobs({ worker: { pollInterval: 60_000 } });
    traced.define('b', handler);
    await untraced.start();
    await traced.start();
    // Each enqueue wakes its worker from inside the request: its claims and the handler must not inherit that.
    const request = await trace.getTracer('app').startActiveSpan('request', (span) =>
      requestStore.run('request-42', async () => {
        const ids = [(await untraced.enqueue('a', {})).id, (await traced.enqueue('b', {})).id];
        span.end();
        return { ids, spanId: span.spanContext().spanId };
      }));
    for (const [jobs, id] of [[untraced, request.ids[0]], [traced, request.ids[1]]] as const) await jobs.waitFor(id, { timeout: 20_000 });
    expect(seen).to.have.length(2);
    for (const s of seen) {
      expect(s.store, "the request's store").to.equal(undefined);
      expect(s.span, "the request's span").not.to.equal(request.spanId);
    }
    expect(seen.map((s) => s.span === undefined)).to.have.members([true, false]); // tracing: false runs in no span; tracing on, in its process span
  });

  it("an enqueue sampled out by the app stays sampled out in its job's attempts ('child'): nothing of it is recorded anywhere", async () => {
    const t = await fresh();
    const jobs = t.jobs({ tracing: { processSpan: 'child' }, worker: { pollInterval: 50 } });
    jobs.define('quiet', () => trace.getTracer('app').startActiveSpan('handler work', (span) => span.end()));
    // A request whose caller decided not to sample it (traceparent flags 00): the default sampler follows its parent.
    const remote = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 0, isRemote: true };
    const { id } = await context.with(trace.setSpanContext(context.active(), remote), () => jobs.enqueue('quiet', {}));
    await jobs.drain();
    const [stored] = await storedContexts(t, [id]);
    expect(JSON.parse(stored!).traceparent, 'the decision is stored with the job').to.match(new RegExp(`^00-${remote.traceId}-[0-9a-f]{16}-00$`));
    expect(exporter.getFinishedSpans().map((s) => s.name), 'no span of the enqueue, the attempt or the handler').to.deep.equal([]);
  });

  it("tracing refuses what it does not know, naming the field", () => {
    const t = { db: null as never };
    expect(() => createJobs({ ...t, tracing: 'on' as never })).to.throw(TypeError, "createJobs: tracing must be false or { processSpan: 'link' | 'child' }; got \"on\"");
    expect(() => createJobs({ ...t, tracing: { parent: true } as never })).to.throw(TypeError, 'createJobs: tracing.parent is not a tracing option; allowed: processSpan');
    expect(() => createJobs({ ...t, tracing: { processSpan: 'parent' } as never })).to.throw(TypeError, "createJobs: tracing.processSpan must be 'link' or 'child'");
  });
});
