/**
 * MySQL/MariaDB session variables set for one piece of work and put back after it (the pool hands
 * the connection on): a schedule tick's lock wait and idle limits, partition DDL's. A connection the
 * server closed meanwhile (idle past its new wait_timeout) fails the restore too: after a failure of
 * the work, the work's own error is the one said.
 */
export async function withSessionLimits<T>(query: (sql: string) => Promise<unknown>, limits: Record<string, number>, work: () => Promise<T>): Promise<T> {
  const names = Object.keys(limits);
  await query(`SET ${names.map((n) => `@sqljobs_${n} = @@SESSION.${n}, SESSION ${n} = ${Math.max(1, Math.floor(limits[n]))}`).join(', ')}`);
  const restore = () => query(`SET ${names.map((n) => `SESSION ${n} = @sqljobs_${n}`).join(', ')}`);
  let out: T;
  try {
    out = await work();
  } catch (err) {
    await restore().catch(() => undefined);
    throw err;
  }
  await restore();
  return out;
}
