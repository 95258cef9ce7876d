/** What the admin tests share: a seeded jobs database and a CSRF-aware client. */
import request from 'supertest';
import type { Jobs } from '../../lib/index.ts';
import { until, type TestDb } from '../helpers/dialects.ts';

export const XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">';

/** One job in each state worth showing, with hostile text in every user field that can hold it. */
export async function seed(jobs: Jobs): Promise<{ failed: string; completed: string; pending: string; delayed: string; binary: string }> {
  jobs.define('ok', async (p: { n?: number }, ctx) => {
    ctx.log(`log ${XSS}`);
    return { echoed: XSS, n: p.n ?? 0 };
  });
  jobs.define('boom', async () => {
    throw new Error(`failure ${XSS}`);
  }, { maxAttempts: 2, backoff: { type: 'fixed', baseMs: 0, jitter: 0 } });
  const completed = (await jobs.enqueue('ok', { html: XSS }, { tag: XSS, batchId: 'b1', refId: 'ref-1' })).id;
  const failed = (await jobs.enqueue('boom', { html: XSS }, { queue: 'mail', tag: 't2' })).id;
  const binary = (await jobs.enqueue('ok', Buffer.from([0xde, 0xad, 0xbe, 0xef]), { delay: 3_600_000 })).id;
  await jobs.drain();
  const pending = (await jobs.enqueue('ok', { n: 1 }, { delay: 3_600_000, queue: 'mail' })).id;
  const delayed = (await jobs.enqueue('ok', { n: 2 }, { delay: 3_600_000 })).id;
  await until(async () => (await jobs.get(failed))?.state === 'failed', 'the failing job to fail');
  return { failed, completed, pending, delayed, binary };
}

/** An agent that keeps the CSRF cookie and knows its token (read from a page, as a browser would). */
export async function client(app: Parameters<typeof request.agent>[0], base = '/admin/jobs') {
  const agent = request.agent(app);
  const page = await agent.get(`${base}/`).expect(200);
  const token = /<meta name="sqljobs-csrf" content="([^"]+)">/.exec(page.text)?.[1];
  if (!token) throw new Error('no CSRF token in the page');
  return { agent, token, base };
}

export type SeededIds = Awaited<ReturnType<typeof seed>>;

/** A started Jobs instance on a fresh database, seeded with seed(). */
export async function seededJobs(fresh: () => Promise<TestDb>, before: (jobs: Jobs) => void = () => undefined): Promise<{ jobs: Jobs; ids: SeededIds }> {
  const t = await fresh();
  const jobs = t.jobs({ worker: { pollInterval: 50 } });
  const ids = await seed(jobs);
  before(jobs);
  await jobs.start();
  return { jobs, ids };
}
