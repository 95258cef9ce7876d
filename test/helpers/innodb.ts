/**
 * InnoDB's open transactions as the server has them now, from SHOW ENGINE INNODB STATUS (made on
 * each call). Not information_schema.INNODB_TRX: InnoDB refreshes that snapshot only when nobody
 * read it for 0.1 s, so a test that polls it, or reads it twice within 0.1 s, can be shown
 * transactions that have ended and miss ones that began since.
 */
export interface InnodbTransaction {
  threadId: number;
  rowLocks: number;
  /** The transaction's own section of the status text (its lock waits, the tables it waits on). */
  status: string;
}

export async function innodbTransactions(query: (text: string) => Promise<{ Status: string }[]>): Promise<InnodbTransaction[]> {
  const [{ Status }] = await query('SHOW ENGINE INNODB STATUS');
  const open: InnodbTransaction[] = [];
  for (const trx of Status.split(/^---TRANSACTION /m).slice(1)) {
    const active = /^\d+, ACTIVE /.test(trx);
    const thread = /^(?:MySQL|MariaDB) thread id (\d+)/m.exec(trx);
    if (!active || !thread) continue; // "not started": a session with no transaction open
    const locks = /(\d+) row lock\(s\)/.exec(trx);
    open.push({ threadId: Number(thread[1]), rowLocks: locks ? Number(locks[1]) : 0, status: trx });
  }
  return open;
}
