/**
 * MariaDB only: an enqueue in the caller's transaction at MySQL's default REPEATABLE READ, after
 * the app has read anything (its snapshot is taken then), sees jobs as they are now, not as the
 * snapshot has them. Unlocked reads on the caller's connection saw the snapshot: a unique key's
 * job made since was missed (two live jobs of one key), a serial key's tail finished since looked
 * live (or the chain forked), a parent completed since looked live (its dependent waited forever).
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
      const again = await jobs.enqueue('x', {}, { unique: { key: 'u' }, tx: app });
      const next = await jobs.enqueue('x', {}, { serial: 'k', tx: app });
      const child = await jobs.enqueue('x', {}, { dependsOn: parent.id, tx: app });
      await app.query('COMMIT');
      expect(again).to.deep.include({ id: held.id, existed: true });
      expect(await jobs.get(next.id), 'the serial job after a finished tail').to.deep.include({ waitingFor: 0 });
      expect(await jobs.get(child.id), 'the dependent of a completed parent').to.deep.include({ waitingFor: 0 });
    } finally {
      await app.end();
      await jobs.close();
    }
  });
}, ['mysql']);
