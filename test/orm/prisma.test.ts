/**
 * Prisma 7 on PostgreSQL, through @prisma/adapter-pg: one pg Pool, given to new PrismaPg(pool) and
 * to createJobs; the client of prisma.$transaction(async (tx) => ...) as opts.tx (see harness.ts).
 *
 * The client is generated here, before the suite, from test/fixtures/prisma/schema.prisma into
 * .tmp/prisma-client (git-ignored, outside what tsc checks, so a clean clone type-checks before any
 * generation). `prisma generate` needs no engine with the prisma-client generator, but the CLI still
 * downloads the schema engine first (from binaries.prisma.sh, unreachable offline) unless
 * PRISMA_SCHEMA_ENGINE_BINARY names one: any existing file will do, as it is never run (node's own
 * executable here, present on every platform). A failed generation fails the suite, with Prisma's output.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'chai';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { createJobs } from '../../lib/index.ts';
import { DIALECTS, PG_URL, requireDatabase, uniquePrefix } from '../helpers/dialects.ts';
import { backendsNamed, createRowsTable } from './postgres-tables.ts';
import { ROLLBACK, ormSuite, type OrmCase } from './harness.ts';

const postgres = DIALECTS.find((d) => d.name === 'postgres')!;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CONFIG = path.join(ROOT, 'test/fixtures/prisma/prisma.config.ts');
const GENERATED = path.join(ROOT, '.tmp/prisma-client/client.ts');

/** What the tests use of the generated client (its own types exist only after generation). */
interface AppRowDelegate {
  create(args: { data: { id: string } }): Promise<{ id: string }>;
  findMany(args: { select: { id: true } }): Promise<{ id: string }[]>;
}
interface PrismaTx {
  appRow: AppRowDelegate;
  $queryRawUnsafe(text: string, ...values: unknown[]): Promise<unknown>;
  $executeRawUnsafe(text: string, ...values: unknown[]): Promise<number>;
}
interface PrismaClientLike extends PrismaTx {
  $transaction<T>(fn: (tx: PrismaTx) => Promise<T>): Promise<T>;
  $disconnect(): Promise<void>;
}
type PrismaClientCtor = new (opts: { adapter: PrismaPg }) => PrismaClientLike;

/** `prisma generate`, offline; throws with the CLI's output when it fails. */
function generateClient(): void {
  const cli = path.join(path.dirname(createRequire(import.meta.url).resolve('prisma/package.json')), 'build/index.js');
  try {
    execFileSync(process.execPath, [cli, 'generate', '--config', CONFIG], {
      cwd: ROOT,
      stdio: 'pipe',
      timeout: 60_000,
      env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? process.execPath, CHECKPOINT_DISABLE: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1' },
    });
  } catch (e) {
    const err = e as { message: string; stdout?: Buffer; stderr?: Buffer };
    throw new Error(`prisma generate failed (${err.message.split('\n')[0]}):\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
}

let PrismaClient: PrismaClientCtor;

const prismaCase: OrmCase = {
  orm: 'Prisma (interactive transaction, @prisma/adapter-pg)',
  dialect: 'postgres',
  connections: () => backendsNamed('sqljobs_orm_prisma'),
  async open() {
    await createRowsTable('orm_rows_prisma');
    // One pool for both: Prisma keeps its connections inside the adapter, so createJobs gets the pool itself.
    const pool = new pg.Pool({ connectionString: PG_URL, application_name: 'sqljobs_orm_prisma', max: 2 });
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
    return {
      db: pool,
      poolMax: 2,
      transaction: (body, rollback) =>
        prisma.$transaction(async (tx) => {
          await tx.appRow.create({ data: { id: body.rowId } });
          const r = await body.enqueue(tx);
          return rollback ? ROLLBACK() : r;
        }),
      rows: async () => (await prisma.appRow.findMany({ select: { id: true } })).map((r) => r.id),
      close: async () => {
        await prisma.$disconnect();
        await pool.end();
      },
    };
  },
};

describe('Prisma on PostgreSQL', function () {
  before(requireDatabase(postgres));
  before(async function () {
    this.timeout(120_000);
    generateClient();
    PrismaClient = ((await import(pathToFileURL(GENERATED).href)) as { PrismaClient: PrismaClientCtor }).PrismaClient;
  });

  ormSuite(prismaCase);

  describe('enqueue options and refusals', function () {
    let pool: pg.Pool;
    let prisma: PrismaClientLike;
    before(() => {
      pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
      prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
    });
    after(async () => {
      await prisma?.$disconnect();
      await pool?.end();
    });

    // Prisma types each value itself ($queryRawUnsafe): every column kind sqljobs writes goes through it here.
    it('takes every enqueue option, a dedupe hit and enqueueMany through the interactive transaction', async () => {
      const jobs = createJobs({ db: pool, tablePrefix: uniquePrefix(), worker: false });
      try {
        await jobs.migrate();
        const runAt = new Date(Date.now() + 60_000);
        const opts = {
          runAt, priority: 7, queue: 'q1', maxAttempts: 9, timeout: 1234, backoff: { type: 'exponential' as const, baseMs: 100, maxMs: 5000, jitter: 0.5 },
          refId: `ref-${crypto.randomUUID()}`, tag: 't', createdBy: 'me', meta: { a: [1, 'x', null] },
        };
        const payload = { text: 'üü\'"', n: 1.5, nested: { b: true, none: null } };
        const r = await prisma.$transaction(async (tx) => ({
          first: await jobs.enqueue('orm.job', payload, { tx: tx as never, ...opts }),
          again: await jobs.enqueue('orm.job', { other: 1 }, { tx: tx as never, refId: opts.refId }),
          many: await jobs.enqueueMany([{ name: 'orm.many', payload: { i: 1 }, delay: 10 }, { name: 'orm.many', payload: { i: 2 }, priority: -3 }], { tx: tx as never }),
        }));
        expect(r.again).to.deep.equal({ id: r.first.id, existed: true });
        expect(r.many.map((m) => m.existed)).to.deep.equal([false, false]);
        const job = await jobs.get(r.first.id);
        expect(job).to.deep.include({ queue: 'q1', priority: 7, maxAttempts: 9, timeoutMs: 1234, refId: opts.refId, tag: 't', createdBy: 'me', state: 'pending' });
        expect(job!.runAt.getTime()).to.equal(runAt.getTime());
        expect(job!.payload).to.deep.equal(payload);
        expect(job!.meta).to.deep.equal(opts.meta);
        expect((await jobs.get(r.many[1].id))?.priority).to.equal(-3);
      } finally {
        await jobs.close();
      }
    });

    it('refuses the root client as opts.tx, saying to use the interactive transaction\'s client', async () => {
      const jobs = createJobs({ db: pool, tablePrefix: uniquePrefix(), worker: false });
      try {
        await jobs.migrate();
        const err = await jobs.enqueue('orm.job', {}, { tx: prisma as never }).then(() => null, (e: unknown) => e as Error);
        expect(err).to.be.instanceOf(TypeError);
        expect(err!.message).to.match(/^opts\.tx: a Prisma client outside a transaction/);
        expect(err!.message).to.include('prisma.$transaction(async (tx) =>');
      } finally {
        await jobs.close();
      }
    });

    it('refuses the client as db, saying to build one pg Pool for both', () => {
      expect(() => createJobs({ db: prisma as never, worker: false })).to.throw(
        TypeError,
        /^createJobs: db: Prisma keeps its connections inside its adapter; build one pg Pool, give it to new PrismaPg\(pool\) and to createJobs/,
      );
    });
  });
});
