/**
 * Every pg connection the store opens (its pools' and its dedicated LISTEN and lock clients), made
 * with one Client class of ours (pg-pool takes it as its `Client` option), so that:
 * - each statement sent on them is watched until it answers (./watchdog.ts): a server that will
 *   never answer it does not hold the worker (or the statement's caller) for ever;
 * - all of them can be dropped at once (`sever`): when stop() or close() gives up on a database that
 *   does not answer, statements waiting on them fail at once, as after a dropped connection, and no
 *   socket of ours keeps the process alive. Without a word to the server: it would not be read.
 */
import type { Client } from 'pg';
import type { ClientCtor } from './app.ts';
import { severSocket, severedError } from '../errors.ts';
import { IDENTIFY, socketOf, type Backend, type StatementWatchdog } from './watchdog.ts';

type Callback = (...args: unknown[]) => void;

/** How long a new connection may take to name its backend before its connect fails (a loaded server answers far sooner). */
const IDENTIFY_TIMEOUT_MS = 10_000;
type ConnectCallback = Parameters<Client['connect']>[0] & object;

export class OwnClients {
  private readonly clients = new Set<Client>();
  /** While above 0, a connect fails at once (see sever). */
  private refusing = 0;

  constructor(private readonly watchdog: StatementWatchdog) {}

  /**
   * `Base` made to record each instance until its connection ends, to name its backend once
   * connected, and to have its statements watched while `watched()` says its session is its own
   * (behind a transaction pooler the backend changes from one transaction to the next).
   */
  tracking(Base: ClientCtor, watched: () => boolean): ClientCtor {
    const { clients, watchdog } = this;
    const refusing = () => this.refusing > 0;
    return class OwnClient extends Base {
      private backend: Backend | null = null;

      constructor(...args: ConstructorParameters<ClientCtor>) {
        super(...args);
        clients.add(this);
        this.once('end', () => clients.delete(this));
      }

      /**
       * pg-pool connects with a callback and listens for the client's errors only from its
       * callback on; everything else of ours listens before it connects. pg calls a connect's
       * callback as it parses the server's ready message, and an error the server sent in the same
       * read (a backend ended at once) is emitted right after: pg-pool used to be listening by
       * then. Naming the backend first puts an await in between, so our own listener covers the
       * whole connect and comes off in the same tick as pg-pool's goes on. An error it heard fails
       * the connect (an uncaught one would have ended the process).
       */
      override connect(): Promise<Client>;
      override connect(callback: ConnectCallback): void;
      override connect(callback?: ConnectCallback): Promise<Client> | void {
        let broken: Error | null = null;
        const onError = (err: Error) => void (broken ??= err);
        this.on('error', onError);
        const connected = (async () => {
          if (refusing()) {
            clients.delete(this);
            throw severedError();
          }
          await (Base.prototype.connect as () => Promise<unknown>).call(this);
          this.backend = await identify(this, Base, Math.max(2 * watchdog.checkMs, IDENTIFY_TIMEOUT_MS));
          if (broken) throw broken;
          return this as Client;
        })();
        const handOver = <T>(then: () => T): T => {
          this.removeListener('error', onError);
          return then();
        };
        if (!callback) return connected.then((c) => handOver(() => c), (err: unknown) => handOver(() => Promise.reject(err)));
        const done = callback as (err: Error | null, c?: Client) => void;
        connected.then((c) => handOver(() => done(null, c)), (err: Error) => handOver(() => done(err)));
      }

      override query(...args: unknown[]): never {
        const send = () => (Base.prototype.query as (...a: unknown[]) => unknown).apply(this, args) as never;
        const first = args[0] as { submit?: unknown; callback?: unknown } | null | undefined;
        // A cursor or a stream (never ours) answers in its own way.
        if (!this.backend || (first && typeof first.submit === 'function') || !watched()) return send();
        const answered = watchdog.watch(this, this.backend);
        const heard = hearAnswer(args, answered);
        try {
          const sent = send() as unknown;
          if (isThenable(sent)) sent.then(answered, answered);
          // An answer this cannot hear is not watched: a statement never seen answering would be taken for one never answered.
          else if (!heard) answered();
          return sent as never;
        } catch (err) {
          answered();
          throw err;
        }
      }
    };
  }

  /**
   * Each connection's socket destroyed, connecting ones too (their connect then fails), and every
   * connect refused until `until` settles: the steps of a shutdown that gave up would otherwise
   * open new connections to the database that does not answer, and wait on them.
   */
  sever(until: Promise<unknown>): void {
    for (const client of this.clients) severClient(client);
    this.clients.clear();
    this.refusing++;
    const done = () => void this.refusing--;
    until.then(done, done);
  }

  /** A connection of ours made outside this class (the watchdog's looks): dropped by sever() too. */
  add(client: Client): void {
    this.clients.add(client);
    client.once('end', () => this.clients.delete(client));
  }
}

export function severClient(client: Client): void {
  severSocket(socketOf(client));
}

/**
 * The backend the server gave this connection, asked before anything else runs on it; null when
 * the server refuses the statement (its statements then go unwatched). A connection that breaks
 * meanwhile (the server ended the backend: a FATAL error, or the socket gone), or whose answer does
 * not come within `timeoutMs`, fails the connect.
 */
async function identify(client: Client, Base: ClientCtor, timeoutMs: number): Promise<Backend | null> {
  const timer = setTimeout(() => severClient(client), timeoutMs).unref();
  try {
    const { rows } = await (Base.prototype.query as (text: string) => Promise<{ rows: { pid: number; started: string }[] }>).call(client, IDENTIFY);
    return rows[0] ? { pid: Number(rows[0].pid), started: String(rows[0].started) } : null;
  } catch (err) {
    if ((err as { severity?: unknown }).severity === 'FATAL' || socketOf(client)?.destroyed !== false) throw err;
    return null;
  } finally {
    clearTimeout(timer);
  }
}

/** The statement's answer, heard through its callback (the last argument, or the config's `callback`) when it has one. */
function hearAnswer(args: unknown[], answered: () => void): boolean {
  const last = args.length - 1;
  if (typeof args[last] === 'function') {
    const callback = args[last] as Callback;
    args[last] = (...r: unknown[]) => {
      answered();
      callback(...r);
    };
    return true;
  }
  const config = args[0] as { callback?: unknown } | null;
  if (config && typeof config === 'object' && typeof config.callback === 'function') {
    const callback = config.callback as Callback;
    args[0] = { ...config, callback: (...r: unknown[]) => {
      answered();
      callback(...r);
    } };
    return true;
  }
  return false;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as PromiseLike<unknown>).then === 'function';
}
