/**
 * Prisma: an interactive transaction client (the `tx` of `prisma.$transaction(async (tx) => ...)`)
 * runs raw statements on its transaction; the driver connection stays inside Prisma's adapter.
 */
import type { OrmTransactionAdapter } from './caller.ts';
import { fn } from './shape.ts';

interface PrismaTxLike {
  $queryRawUnsafe(text: string, ...values: unknown[]): Promise<Record<string, unknown>[]>;
}

export const isPrismaClient = (o: Record<string, unknown>): boolean => fn(o, '$queryRawUnsafe') && fn(o, '$executeRawUnsafe');

export const prismaTransaction: OrmTransactionAdapter = {
  name: 'a Prisma client',
  matches: isPrismaClient,
  async open(o) {
    // The transaction client is the one without $disconnect: Prisma leaves $connect, $disconnect, $on
    // and $extends off it. Not $transaction: Prisma 7 keeps that on the transaction client (nested
    // transactions), so checking it refused every interactive transaction's client.
    if (fn(o, '$disconnect')) {
      throw new TypeError('opts.tx: a Prisma client outside a transaction; pass the client an interactive transaction gives you: prisma.$transaction(async (tx) => jobs.enqueue(..., { tx }))');
    }
    const tx = o as unknown as PrismaTxLike;
    return {
      name: 'the Prisma transaction',
      runner: { query: (text, values) => tx.$queryRawUnsafe(text, ...values), inTransaction: () => true },
    };
  },
};
