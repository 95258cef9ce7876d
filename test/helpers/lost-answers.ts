/** Faults a store's calls are wrapped with: a connection that drops after the server committed. */
import type { Jobs } from '../../lib/index.ts';
import { until } from './dialects.ts';

/** What pg throws when the server's connection drops mid-statement. */
export function dropped(): Error {
  return Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
}

/**
 * The store's next claim that brings jobs commits, then stop() is called and the claim's answer is
 * lost. Returns a function that waits for that claim and for the stop.
 */
export function stopAtLostClaim(jobs: Jobs): () => Promise<void> {
  const claim = jobs.store.jobClaim.bind(jobs.store);
  let stopping: Promise<void> | null = null;
  jobs.store.jobClaim = async (req) => {
    const got = await claim(req);
    if (!got.length || stopping) return got;
    stopping = jobs.stop();
    throw dropped();
  };
  return async () => {
    await until(() => stopping !== null, 'the claim');
    await stopping;
  };
}
