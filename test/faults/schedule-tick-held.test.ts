/**
 * A schedule's tick held by a session that went silent mid-tick (a leader SIGSTOPped, or a VM
 * paused, inside the tick's transaction): the tick's key stays locked for as long as that session
 * lives. Another instance's tick for the same slot waited on it without limit, and every schedule
 * behind it in the round with it (PostgreSQL: no schedule fired for the 75 s a leader was
 * stopped). Now a tick waits at most TICK_LOCK_WAIT_MS, is said as an error and tried again next
 * round, and the other schedules keep firing.
 */
import { expect } from 'chai';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { MYSQL_URL, PG_URL, forEachDialect, until, type TestDb } from '../helpers/dialects.ts';
import { TICK_LOCK_WAIT_MS } from '../../lib/driver/portable/schedules.ts';

/** Insert the ticks of `key` for the next `seconds` whole seconds in another session's open transaction, until release(). */
async function holdTicks(t: TestDb, key: string, seconds: number): Promise<{ release(): Promise<void> }> {
  const first = Math.ceil(Date.now() / 1000) * 1000;
  const slots = Array.from({ length: seconds }, (_, i) => first + i * 1000);
  const table = `${t.prefix}schedule_ticks`;
  if (t.dialect === 'postgres') {
    const client = new pg.Client({ connectionString: PG_URL });
    client.on('error', () => undefined);
    await client.connect();
    await client.query('BEGIN');
    for (const at of slots) await client.query(`INSERT INTO ${table} (schedule_key, fire_at, job_id) VALUES ($1, $2, $3)`, [key, new Date(at), crypto.randomUUID()]);
    return { release: async () => void (await client.query('ROLLBACK'), await client.end()) };
  }
  const conn = await mysql.createConnection(MYSQL_URL);
  conn.on('error', () => undefined);
  await conn.query('START TRANSACTION');
  for (const at of slots) {
    await conn.query(`INSERT INTO ${table} (schedule_key, fire_at, job_id) VALUES (?, ?, ?)`, [key, new Date(at).toISOString().replace('T', ' ').slice(0, 23), crypto.randomUUID()]);
  }
  return { release: async () => void (await conn.query('ROLLBACK'), await conn.end()) };
}

forEachDialect('faults: a schedule\'s tick held by a silent session', ({ fresh }) => {
  it('the held schedule is said and tried again each round; the others keep firing; it fires once the session ends', async function () {
    this.timeout(40_000);
    const t = await fresh();
    const jobs = t.jobs({ worker: { pollInterval: 100 } });
    const fired: string[] = [];
    const errors: string[] = [];
    jobs.on('error', (err) => void errors.push((err as Error).message));
    jobs.on('scheduled', (e) => void fired.push(e.key));
    jobs.define('tick', async () => undefined);
    for (const key of ['a-held', 'b-free']) jobs.recurring(key, '* * * * * *', null, { name: 'tick', missed: 'all' });
    await jobs.migrate();
    const holder = await holdTicks(t, 'a-held', 30);
    try {
      await jobs.start();
      await until(() => fired.filter((k) => k === 'b-free').length >= 3, 'the free schedule to fire three ticks', 15_000);
      expect(fired.filter((k) => k === 'a-held'), 'the held schedule').to.deep.equal([]);
      const said = errors.filter((m) => m.startsWith('schedule a-held:'));
      expect(said.length, 'the held tick said').to.be.at.least(1);
      expect(said[0]).to.match(/lock/i);
    } finally {
      await holder.release();
    }
    await until(() => fired.includes('a-held'), 'the held schedule to fire once free', 10_000);
    await jobs.stop();
    expect(TICK_LOCK_WAIT_MS).to.be.at.most(5_000);
  });
}, ['postgres', 'slonik', 'mysql']);
