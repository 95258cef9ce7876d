/**
 * Graceful exit for a process that exists to run jobs (mode 'consumer', `sqljobs worker`): the
 * first SIGTERM or SIGINT stops claiming, lets running jobs finish within the shutdown timeout
 * (the rest are refunded to pending), releases the library's connections and exits; a second
 * signal exits at once.
 */
interface Closable {
  close(): Promise<void>;
}

const installed = new WeakSet<Closable>();

export function stopOnSignals(jobs: Closable, say: (line: string) => void = () => undefined): void {
  if (installed.has(jobs)) return;
  installed.add(jobs);
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    say(`${signal}: stopping (running jobs get their shutdown timeout)`);
    jobs.close().then(
      () => process.exit(0),
      (err: unknown) => {
        say(`stop failed: ${(err as Error).message ?? err}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
