/**
 * The connection sqljobs opens beside the app's better-sqlite3 handle (its worker writes there):
 * WAL, synchronous NORMAL, SQLite's own 2 MiB page cache rather than better-sqlite3's 16 MiB. The
 * app's handle keeps the settings the app gave it.
 */
import { expect } from 'chai';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createJobs } from '../../lib/index.ts';
import { until } from '../helpers/dialects.ts';

describe('SQLite: the connection of its own beside the app\'s handle', () => {
  it('is in WAL with synchronous NORMAL and a 2 MiB page cache, and leaves the app\'s handle as the app set it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-conn-'));
    const app = new Database(path.join(dir, 'app.db'));
    app.pragma('cache_size = -64000');
    app.pragma('synchronous = FULL');
    const jobs = createJobs<{ noop: { n: number } }>({ db: app });
    try {
      let ran = 0;
      jobs.define('noop', () => void ran++);
      await jobs.migrate();
      await jobs.enqueueMany(Array.from({ length: 50 }, (_, n) => ({ name: 'noop' as const, payload: { n } })));
      await jobs.start();
      await until(() => ran === 50, '50 jobs to run');
      const own = (jobs.store as unknown as { own: Database.Database }).own;
      expect(own).to.not.equal(app);
      expect(own.pragma('journal_mode', { simple: true })).to.equal('wal');
      expect(own.pragma('synchronous', { simple: true })).to.equal(1);
      expect(own.pragma('cache_size', { simple: true })).to.equal(-2000);
      expect(app.pragma('cache_size', { simple: true })).to.equal(-64000);
      expect(app.pragma('synchronous', { simple: true })).to.equal(2);
    } finally {
      await jobs.close();
      app.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
