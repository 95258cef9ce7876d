/**
 * Every pg connection the store opens (its pools' and its dedicated LISTEN and lock clients), made
 * with one Client class of ours (pg-pool takes it as its `Client` option), so that:
 * - each statement sent on them is watched until it answers (./watchdog.ts): a server that will
 *   never answer it does not hold the worker (or the statement's caller) for ever;
 * - all of them can be dropped at once (`sever`): when stop() or close() gives up on a database that
 *   does not answer, statements waiting on them fail at once, as after a dropped connection, and no
 *   socket of ours keeps the process alive. Without a word to the server: it would not be read.
 */
import type { Socket } from 'node:net';
import type { Client } from 'pg';
import type { ClientCtor } from './app.ts';
import { severSocket, severedError } from '../errors.ts';
import { IDENTIFY, type Backend, type StatementWatchdog } from './watchdog.ts';

type Callback = (...args: unknown[]) => void;
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

      // pg-pool connects with a callback, everything else of ours with the promise.
      override connect(): Promise<Client>;
      override connect(callback: ConnectCallback): void;
      override connect(callback?: ConnectCallback): Promise<Client> | void {
        const connected = (async () => {
          if (refusing()) throw severedError();
          await (Base.prototype.connect as () => Promise<unknown>).call(this);
          this.backend = await identify(this, Base);
          return this as Client;
        })();
        if (!callback) return connected;
        const done = callback as (err: Error | null, c?: Client) => void;
        connected.then((c) => done(null, c), (err: Error) => done(err));
      }

      override query(...args: unknown[]): never {
        const send = () => (Base.prototype.query as (...a: unknown[]) => unknown).apply(this, args) as never;
        const first = args[0] as { submit?: unknown } | null | undefined;
        // A cursor or a stream (never ours) answers in its own way.
        if (!this.backend || (first && typeof first.submit === 'function') || !watched()) return send();
        const answered = watchdog.watch(this, this.backend);
        const last = args.length - 1;
        if (typeof args[last] === 'function') {
          const callback = args[last] as Callback;
          args[last] = (...r: unknown[]) => {
            answered();
            callback(...r);
          };
        }
        try {
          const sent = send() as unknown;
          if (sent instanceof Promise) sent.then(answered, answered);
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
}

export function severClient(client: Client): void {
  severSocket((client as unknown as { connection?: { stream?: Socket } }).connection?.stream);
}

/** The backend the server gave this connection; null when it cannot say (its statements then go unwatched). */
async function identify(client: Client, Base: ClientCtor): Promise<Backend | null> {
  try {
    const { rows } = await (Base.prototype.query as (text: string) => Promise<{ rows: { pid: number; started: string }[] }>).call(client, IDENTIFY);
    return rows[0] ? { pid: Number(rows[0].pid), started: String(rows[0].started) } : null;
  } catch {
    return null; // a connection that broke meanwhile fails its next statement, as any dropped one
  }
}
