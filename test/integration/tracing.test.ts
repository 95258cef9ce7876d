/**
 * OpenTelemetry traces across processes (issue 16), with the SDK's in-memory exporter and its HTTP
 * instrumentation in each process: an Express request in one process enqueues a job that a
 * worker in another process runs. The request's server span parents the enqueue's send span; the
 * attempt's process span links to the send span (its own trace) or, with processSpan 'child',
 * continues the request's trace as the send span's child; the handler's own span nests under it.
 */
import { expect } from 'chai';
import path from 'node:path';
import { forEachDialect, type TestDb } from '../helpers/dialects.ts';
import { spawnWorker, type WorkerProc } from '../helpers/processes.ts';

const FIXTURE = path.resolve('test/fixtures/traced-process.ts');

interface PlainSpan {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  links: { traceId: string; spanId: string }[];
  status: { code: number; message?: string };
  attributes: Record<string, unknown>;
  events: string[];
}

/** OpenTelemetry's SpanKind and SpanStatusCode values. */
const SERVER = 1;
const PRODUCER = 3;
const CONSUMER = 4;
const ERROR = 2;

async function start(t: TestDb, relation: 'link' | 'child'): Promise<{ web: WorkerProc; worker: WorkerProc; url: string }> {
  const env = { DIALECT: t.dialect, DRIVER: t.driver, LOCATION: t.location, PREFIX: t.prefix, RELATION: relation };
  const web = spawnWorker({ ...env, ROLE: 'web' }, FIXTURE);
  const port = (await web.waitFor(/^listening \d+$/, 30_000)).split(' ')[1];
  const worker = spawnWorker({ ...env, ROLE: 'worker' }, FIXTURE);
  await worker.waitFor(/^ready$/, 30_000);
  return { web, worker, url: `http://127.0.0.1:${port}` };
}

/** Place an order; answer the web process's spans of it and the worker's spans once it ran. */
async function order(p: { web: WorkerProc; worker: WorkerProc; url: string }, fail = false): Promise<{ id: string; web: PlainSpan[]; worker: PlainSpan[] }> {
  const res = await fetch(`${p.url}/orders${fail ? '?fail=1' : ''}`, { method: 'POST' });
  expect(res.status).to.equal(201);
  const { id } = (await res.json()) as { id: string };
  const line = await p.worker.waitFor(new RegExp(`^spans .*"messaging.message.id":"${id}"`), 30_000);
  const web = (await (await fetch(`${p.url}/spans`)).json()) as PlainSpan[];
  return { id, web, worker: JSON.parse(line.slice('spans '.length)) as PlainSpan[] };
}

function one(spans: PlainSpan[], where: (s: PlainSpan) => boolean, what: string): PlainSpan {
  const found = spans.filter(where);
  expect(found, `${what} among ${spans.map((s) => s.name).join(', ')}`).to.have.length(1);
  return found[0];
}

/** The request's server span, its send span, and the worker's process and handler spans of job `id`. */
function spansOf(run: { id: string; web: PlainSpan[]; worker: PlainSpan[] }) {
  const send = one(run.web, (s) => s.kind === PRODUCER && s.attributes['messaging.message.id'] === run.id, 'the send span');
  const server = one(run.web, (s) => s.kind === SERVER && s.spanId === send.parentSpanId, "the send span's parent, a server span");
  const process = one(run.worker, (s) => s.kind === CONSUMER && s.attributes['messaging.message.id'] === run.id, 'the process span');
  const handler = one(run.worker, (s) => s.name === 'handler work' && s.parentSpanId === process.spanId, "the handler's span, a child of the process span");
  return { server, send, process, handler };
}

forEachDialect('traces across processes', ({ fresh }) => {
  // The processes helper kills what is left after each test: a failed assertion leaves none running.
  it('a request enqueues, another process runs it: the process span links to the send span, which the request span parents', async function () {
    this.timeout(90_000);
    const t = await fresh();
    const p = await start(t, 'link');
    const { server, send, process, handler } = spansOf(await order(p));
    expect(send.name).to.equal('send default');
    expect(send.traceId, 'the send span is in the request trace').to.equal(server.traceId);
    expect(send.attributes).to.deep.include({
      'messaging.system': 'sqljobs', 'messaging.operation.name': 'send', 'messaging.operation.type': 'send',
      'messaging.destination.name': 'default', 'sqljobs.job.name': 'traced',
    });
    expect(process.name).to.equal('process default');
    expect(process.parentSpanId, 'a trace of its own').to.equal(null);
    expect(process.traceId).not.to.equal(send.traceId);
    expect(process.links).to.deep.equal([{ traceId: send.traceId, spanId: send.spanId }]);
    expect(process.attributes).to.deep.include({
      'messaging.system': 'sqljobs', 'messaging.operation.name': 'process', 'messaging.operation.type': 'process',
      'messaging.destination.name': 'default', 'sqljobs.job.name': 'traced', 'sqljobs.job.attempt': 1, 'sqljobs.job.outcome': 'completed',
    });
    expect(process.status.code).not.to.equal(ERROR);
    expect(handler.traceId).to.equal(process.traceId);
  });

  it("with processSpan 'child' the attempt continues the request's trace under the send span; a failure is recorded on it", async function () {
    this.timeout(90_000);
    const t = await fresh();
    const p = await start(t, 'child');
    const ok = spansOf(await order(p));
    expect(ok.process.traceId, "the request's trace").to.equal(ok.server.traceId);
    expect(ok.process.parentSpanId).to.equal(ok.send.spanId);
    expect(ok.process.links).to.deep.equal([]);

    const failed = spansOf(await order(p, true));
    expect(failed.process.traceId).to.equal(failed.server.traceId).and.not.to.equal(ok.server.traceId);
    expect(failed.process.status).to.deep.equal({ code: ERROR, message: 'the order could not be processed' });
    expect(failed.process.events).to.include('exception');
    expect(failed.process.attributes['sqljobs.job.outcome']).to.equal('failed');
  });
});
