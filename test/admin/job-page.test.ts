/**
 * The job page never contradicts itself (issue 16): the whole job (badge, actions, times, attempts,
 * logs) polls while the job is live and its last answer, once finished, stops the polling; a timeout
 * from define() is shown; a cancelled running attempt stays in the attempts; a pending retry shows
 * no stale progress; a failed job's error is summarised at the top; times are <time> elements; the
 * pages carry a favicon the admin serves.
 */
import { expect } from 'chai';
import express from 'express';
import request from 'supertest';
import { jobsAdmin, type Jobs } from '../../lib/index.ts';
import { forEachDialect, until } from '../helpers/dialects.ts';

const BASE = '/admin/jobs';

function appWith(jobs: Jobs) {
  const app = express();
  app.use(BASE, jobsAdmin(jobs));
  return app;
}

forEachDialect('admin job page', ({ fresh }) => {
  it('polls the whole job while it runs; the answer once it finished has its result, times, attempt and every log line, no Cancel, and no poller', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, logFlushInterval: 20 } });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    jobs.define('report', async (_: unknown, ctx) => {
      for (let i = 1; i <= 6; i++) ctx.log(`line ${i}`);
      await ctx.progress(40);
      await gate;
      return { pages: 6 };
    }, { timeout: 120_000 });
    await jobs.start();
    const app = appWith(jobs);
    const { id } = await jobs.enqueue('report', {});
    await until(async () => (await jobs.get(id))?.progress === 40 && (await jobs.logs(id)).length === 6, 'the job to log and report progress');
    const running = (await request(app).get(`${BASE}/jobs/${id}`).expect(200)).text;
    expect(running).to.match(/<div id="live" data-state="running" hx-get="[^"]+\/live" hx-trigger="every 2s"/);
    expect(running).to.include('>Cancel</button>');
    expect(running).to.include('<dd id="timeout">2 min (from define())</dd>');
    expect(running).to.match(/#1 running/);
    release();
    await until(async () => (await jobs.get(id))?.state === 'completed', 'the job to complete');
    const done = (await request(app).get(`${BASE}/jobs/${id}/live`).expect(200)).text;
    expect(done).to.include('<div id="live" data-state="completed">');
    expect(done).not.to.match(/hx-(get|trigger)/);
    expect(done).not.to.include('>Cancel</button>');
    expect(done).to.include('>Retry</button>');
    expect(done).to.match(/<h1>report <span class="state state-completed">completed<\/span>\s*<\/h1>/);
    expect(done).to.include('<pre id="result">{\n  &#34;pages&#34;: 6\n}</pre>');
    expect(done).to.match(/<dt>finished<\/dt><dd><time datetime="[^"]+Z" title="[^"]+Z">[^<]+Z<\/time><\/dd>/);
    // run at too: it was plain UTC text, never shown in the reader's zone as the times beside it.
    expect(done).to.match(/<dd id="run-at"><time datetime="[^"]+Z" title="[^"]+Z">[^<]+Z<\/time><\/dd>/);
    expect(done).to.match(/#1 completed/);
    for (let i = 1; i <= 6; i++) expect(done).to.include(`#1  line ${i}`);
    // A long job's page shows its latest lines: logs({ last: true }) answers the tail, in order.
    expect((await jobs.logs(id, { limit: 2, last: true })).map((l) => l.message)).to.deep.equal(['line 5', 'line 6']);
    expect((await jobs.logs(id, { limit: 2 })).map((l) => l.message)).to.deep.equal(['line 1', 'line 2']);
    expect(done).to.include('<progress id="progress" max="100" value="100" data-state="completed">');
    expect(done).not.to.include('Reload');
    await jobs.stop();
  });

  it('a running job cancelled keeps its attempt (cancelled, with its time); a pending retry shows no stale progress; a failed job says its error at the top', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 50, logFlushInterval: 20 } });
    jobs.define('long', async (_: unknown, ctx) => {
      ctx.log('started');
      await ctx.progress(70);
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
    });
    jobs.define('flaky', async (_: unknown, ctx) => {
      await ctx.progress(55);
      throw new Error('upstream said no');
    }, { maxAttempts: 2, backoff: { type: 'fixed', baseMs: 3_600_000, jitter: 0 } });
    jobs.define('hopeless', async () => {
      throw new TypeError('bad input');
    }, { maxAttempts: 1 });
    await jobs.start();
    const app = appWith(jobs);
    const long = (await jobs.enqueue('long', {})).id;
    const flaky = (await jobs.enqueue('flaky', {})).id;
    const hopeless = (await jobs.enqueue('hopeless', {})).id;
    await until(async () => (await jobs.get(long))?.progress === 70, 'the long job to report progress');
    expect(await jobs.cancel(long)).to.equal(true);
    const attempts = await jobs.attempts(long);
    expect(attempts).to.have.length(1);
    expect(attempts[0]).to.deep.include({ attempt: 1, outcome: 'cancelled' });
    expect(attempts[0].finishedAt).to.be.instanceOf(Date);
    const cancelled = (await request(app).get(`${BASE}/jobs/${long}`).expect(200)).text;
    expect(cancelled).to.include('<li class="attempt outcome-cancelled">').and.match(/#1 cancelled/);

    await until(async () => (await jobs.get(flaky))?.attempts === 1 && (await jobs.get(flaky))?.state === 'pending', 'the flaky job to wait for its retry');
    const retrying = (await request(app).get(`${BASE}/jobs/${flaky}`).expect(200)).text;
    expect(retrying).to.include('<p class="muted" id="progress-text">Waiting to run again (attempt 2).</p>');
    expect(retrying).not.to.include('value="55"');
    expect(retrying).to.include('<p class="error" id="error-summary">Last attempt failed: Error: upstream said no');

    await until(async () => (await jobs.get(hopeless))?.state === 'failed', 'the hopeless job to fail');
    const failed = (await request(app).get(`${BASE}/jobs/${hopeless}`).expect(200)).text;
    const summary = failed.indexOf('id="error-summary"');
    expect(summary, 'the error, summarised').to.be.greaterThan(-1);
    expect(failed.slice(summary, failed.indexOf('</p>', summary))).to.include('TypeError: bad input');
    expect(summary, 'above the attempts').to.be.lessThan(failed.indexOf('<h2>Attempts</h2>'));
    expect(failed).to.include('data-state="failed"');
    await jobs.stop();
  });

  it('every page links a favicon the admin serves, and a timeout nobody set says where one may come from', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    const app = appWith(jobs);
    const { id } = await jobs.enqueue('elsewhere', {}, { delay: 3_600_000 });
    const page = (await request(app).get(`${BASE}/jobs/${id}`).expect(200)).text;
    expect(page).to.include('<dd id="timeout">none set at enqueue (a worker&#39;s define() may set one)</dd>');
    const icon = /<link rel="icon" type="image\/svg\+xml" href="([^"]+)">/.exec(page)?.[1];
    expect(icon).to.match(new RegExp(`^${BASE}/static/favicon-[0-9a-f]{12}\\.svg$`));
    const served = await request(app).get(icon!).expect(200);
    expect(served.headers['content-type']).to.equal('image/svg+xml');
    const error = (await request(app).get(`${BASE}/jobs/not-an-id`).expect(400)).text;
    expect(error).to.include(`<link rel="icon" type="image/svg+xml" href="${icon}">`);
  });
});
