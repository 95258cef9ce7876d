/**
 * Graceful exit for a process that exists to run jobs (mode 'consumer', `sqljobs worker`): the
 * first SIGTERM or SIGINT stops claiming, lets running jobs finish within the shutdown timeout
 * (the rest are refunded to pending), releases the library's connections of every such instance
 * in the process, and exits; a second signal exits at once.
 */
interface Closable {
  close(): Promise<void>;
}

const instances = new Set<Closable>();
const sayers: ((line: string) => void)[] = [];
let installed = false;
let stopping = false;

export function stopOnSignals(jobs: Closable, say?: (line: string) => void): void {
  instances.add(jobs);
  if (say) sayers.push(say);
  if (installed) return;
  installed = true;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function onSignal(signal: NodeJS.Signals): void {
  if (stopping) process.exit(1);
  stopping = true;
  const say = (line: string) => sayers.forEach((s) => s(line));
  say(`${signal}: stopping (running jobs get their shutdown timeout)`);
  // Every instance first: exiting after the first one would cut the others' jobs off mid-handler.
  Promise.all([...instances].map((j) => j.close())).then(
    () => process.exit(0),
    (err: unknown) => {
      say(`stop failed: ${(err as Error).message ?? err}`);
      process.exit(1);
    },
  );
}
