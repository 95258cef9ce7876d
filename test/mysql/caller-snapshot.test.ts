/**
 * MariaDB only: an enqueue in the caller's transaction at MySQL's default REPEATABLE READ, after
 * the app has read anything (its snapshot is taken then), sees serial tails and parents as they
 * are now, not as the snapshot has them: a serial key's tail finished since looked live (or the
 * chain forked), a parent completed since looked live (its dependent waited forever). A unique
 * key's jobs are read without a lock: one over the key's index range took gap locks there, and
 * another caller's enqueue of another key waited for the first one's commit.
 */
import { expect } from 'chai';
import mysql from 'mysql2/promise';
import { forEachDialect, MYSQL_URL } from '../helpers/dialects.ts';

forEachDialect('enqueue in a caller\'s REPEATABLE READ transaction', ({ fresh }) => {
  it('unique keys, serial tails and parents are read as committed now, not as the caller\'s snapshot had them', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 20 } });
    jobs.define('x', async () => undefined);
    await jobs.migrate();
    const tail = await jobs.enqueue('x', {}, { serial: 'k' });
    const parent = await jobs.enqueue('x', {});
    const app = await mysql.createConnection(MYSQL_URL);
    try {
      expect(((await app.query('SELECT @@tx_isolation AS i'))[0] as { i: string }[])[0].i).to.equal('REPEATABLE-READ');
      await app.query('START TRANSACTION');
      await app.query(`SELECT COUNT(*) FROM ${t.prefix}jobs`); // the snapshot
      // Meanwhile, committed elsewhere: a unique job, and the serial tail and the parent finish.
      const held = await jobs.enqueue('x', {}, { unique: { key: 'u' }, delay: 60_000 });
      await jobs.drain();
      expect((await jobs.get(tail.id))!.state).to.equal('completed');
      expect((await jobs.get(parent.id))!.state).to.equal('completed');
      expect(held.existed).to.equal(false);
      const next = await jobs.enqueue('x', {}, { serial: 'k', tx: app });
      const child = await jobs.enqueue('x', {}, { dependsOn: parent.id, tx: app });
      await app.query('COMMIT');
      expect(await jobs.get(next.id), 'the serial job after a finished tail').to.deep.include({ waitingFor: 0 });
      expect(await jobs.get(child.id), 'the dependent of a completed parent').to.deep.include({ waitingFor: 0 });
    } finally {
      await app.end();
      await jobs.close();
    }
  });

  it('two callers\' transactions enqueueing unique jobs of different keys do not wait for each other', async () => {
    const t = await fresh();
    const jobs = t.jobs({ worker: false });
    await jobs.migrate();
    const [first, second] = [await mysql.createConnection(MYSQL_URL), await mysql.createConnection(MYSQL_URL)];
    try {
      for (const c of [first, second]) {
        await c.query('START TRANSACTION');
        await c.query(`SELECT COUNT(*) FROM ${t.prefix}jobs`);
      }
      await jobs.enqueue('x', {}, { unique: { key: 'p' }, tx: first });
      const started = Date.now();
      const other = await jobs.enqueue('x', {}, { unique: { key: 'q' }, tx: second });
      expect(Date.now() - started, 'ms the second caller waited').to.be.below(1_000);
      expect(other.existed).to.equal(false);
      await Promise.all([first.query('COMMIT'), second.query('COMMIT')]);
    } finally {
      await Promise.all([first.end(), second.end()]);
      await jobs.close();
    }
  });
}, ['mysql']);
