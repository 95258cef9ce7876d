/**
 * PostgreSQL only: an enqueue on the caller's transaction carries its values in the statement's
 * text as literals (lib/driver/postgres/enqueue.ts says why): its rows as JSON inside an SQL
 * string literal. Strings that quote or escape in either syntax, or look like a placeholder, come
 * back exactly through pg and slonik (slonik's tokens were cut at a `$1` inside the literal), and a
 * rolled-back transaction leaves nothing.
 */
import { expect } from 'chai';
import type pg from 'pg';
import type { DatabasePool } from 'slonik';
import { forEachDialect } from '../helpers/dialects.ts';
import { AWKWARD_STRINGS } from '../helpers/portable.ts';


forEachDialect('enqueue on the caller\'s transaction, values as literals', ({ fresh }) => {
  it('strings that quote or escape in SQL or JSON, or look like placeholders, come back exactly; a rollback leaves nothing', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const items = AWKWARD_STRINGS.map((s, i) => ({ name: 'awkward', payload: { s, i }, tag: s, meta: { s }, refId: `ref ${s}` }));
    const inTransaction = async <T>(fn: (tx: unknown) => Promise<T>, commit: boolean): Promise<T | null> => {
      if (t.driver === 'slonik') {
        let out: T | null = null;
        await (t.db as DatabasePool)
          .transaction(async (tx) => {
            out = await fn(tx);
            if (!commit) throw new Error('rolled back');
          })
          .catch((e: Error) => expect(e.message).to.equal('rolled back'));
        return out;
      }
      const c = await (t.db as pg.Pool).connect();
      try {
        await c.query('BEGIN');
        const out = await fn(c);
        await c.query(commit ? 'COMMIT' : 'ROLLBACK');
        return out;
      } finally {
        c.release();
      }
    };
    const lost = await inTransaction((tx) => jobs.enqueueMany(items, { tx: tx as never }), false);
    for (const r of lost!) expect(await jobs.get(r.id)).to.equal(null);
    const kept = (await inTransaction((tx) => jobs.enqueueMany(items, { tx: tx as never }), true))!;
    for (const [i, r] of kept.entries()) {
      const got = (await jobs.get(r.id))!;
      expect(got.payload, AWKWARD_STRINGS[i]).to.deep.equal({ s: AWKWARD_STRINGS[i], i });
      expect(got.meta, AWKWARD_STRINGS[i]).to.deep.equal({ s: AWKWARD_STRINGS[i] });
      expect(got.tag, AWKWARD_STRINGS[i]).to.equal(AWKWARD_STRINGS[i]);
    }
    const one = await inTransaction((tx) => jobs.enqueue('awkward', { again: true }, { refId: `ref ${AWKWARD_STRINGS[0]}`, tx: tx as never }), true);
    expect(one).to.deep.equal({ id: kept[0].id, existed: true });
  });
}, ['postgres', 'slonik']);
