/**
 * The facade's store view: each verb that answers a promise runs after the migrations, which are
 * applied once (a failed attempt is made again by the next call); synchronous verbs, close() and
 * migrate() are called as they are.
 */
import { expect } from 'chai';
import type { Store } from '../../lib/driver/store.ts';
import { migratedStore } from '../../lib/migrated.ts';

/** A store that records calls, whose migrations fail as many times as asked first. */
function fakeStore(failures: number) {
  const calls: string[] = [];
  const store = {
    dialect: 'sqlite' as const,
    capabilities: { notify: false, syncEnqueue: true },
    async migrate() {
      calls.push('migrate');
      if (failures-- > 0) throw new Error('migration refused');
    },
    async jobGet(id: string) {
      calls.push(`get ${id}`);
      return null;
    },
    jobInsertManySync() {
      calls.push('jobInsertManySync');
      return [];
    },
    appInTransaction() {
      calls.push('appInTransaction');
      return false;
    },
    async close() {
      calls.push('close');
    },
  };
  // Typed as the Store it stands in for: a verb renamed there fails to compile here.
  return { store: store satisfies Partial<Store> as unknown as Store, calls };
}

describe('migrated store view', () => {
  it('migrates once before the first verb, shared by concurrent calls', async () => {
    const { store, calls } = fakeStore(0);
    const { view } = migratedStore(store, () => false);
    await Promise.all([view.jobGet('a'), view.jobGet('b')]);
    await view.jobGet('c');
    expect(calls).to.deep.equal(['migrate', 'get a', 'get b', 'get c']);
  });

  it('a failed migration fails the verb, and the next call migrates again', async () => {
    const { store, calls } = fakeStore(1);
    const { view, migrate } = migratedStore(store, () => false);
    const err = await view.jobGet('a').catch((e: Error) => e);
    expect((err as Error).message).to.equal('migration refused');
    await view.jobGet('b');
    await migrate();
    expect(calls).to.deep.equal(['migrate', 'migrate', 'get b']);
  });

  it('calls synchronous verbs, close() and the dialect fields as they are, without migrating', async () => {
    const { store, calls } = fakeStore(0);
    const { view } = migratedStore(store, () => false);
    expect(view.jobInsertManySync!({ rows: [] })).to.deep.equal([]);
    expect(view.appInTransaction!()).to.equal(false);
    expect(view.capabilities.syncEnqueue).to.equal(true);
    expect(view.beginTransaction).to.equal(undefined);
    await view.close();
    expect(calls).to.deep.equal(['jobInsertManySync', 'appInTransaction', 'close']);
  });

  it('reads a verb at each call, so that one replaced on the store is used', async () => {
    const { store, calls } = fakeStore(0);
    const { view } = migratedStore(store, () => false);
    store.jobGet = async (id) => {
      calls.push(`replaced ${id}`);
      return null;
    };
    await view.jobGet('a');
    expect(calls).to.deep.equal(['migrate', 'replaced a']);
  });

  it('once close() was called, a failure says so with the driver\'s words; before, and a success after, are as they are', async () => {
    const { store } = fakeStore(0);
    let closed = false;
    const { view } = migratedStore(store, () => closed);
    store.jobGet = async (id) => {
      if (id === 'bad') throw new Error('Pool is closed.');
      return null;
    };
    expect((await view.jobGet('bad').catch((e: Error) => e) as Error).message).to.equal('Pool is closed.');
    closed = true;
    const err = (await view.jobGet('bad').catch((e: Error) => e)) as Error;
    expect(err.message).to.equal('sqljobs: this instance was closed (close()), and the connections it opened with it: create another (createJobs) to read or change jobs (the database driver said: Pool is closed.)');
    expect((err.cause as Error).message).to.equal('Pool is closed.');
    expect(await view.jobGet('good')).to.equal(null);
    // Any other failure after close() is its own (a caller's ended transaction, a refused argument).
    const own = new TypeError('opts.tx: the pg client is not inside a transaction');
    store.jobGet = async () => {
      throw own;
    };
    expect(await view.jobGet('x').catch((e: unknown) => e)).to.equal(own);
  });
});
