/**
 * Every pg connection the store opens (its pools' and its dedicated LISTEN and lock clients), known
 * from the moment it is made, so that all of them can be dropped at once: when stop() or close()
 * gives up on a database that does not answer (a server stopped with SIGSTOP, a half-open connection
 * after a failover), statements waiting on them fail at once, as after a dropped connection, and no
 * socket of ours keeps the process alive. Without a word to the server: it would not be read.
 */
import type { Socket } from 'node:net';
import type { Client } from 'pg';
import type { ClientCtor } from './app.ts';
import { severSocket } from '../errors.ts';

export class OwnClients {
  private readonly clients = new Set<Client>();

  /** `Base` made to record each instance until its connection ends (pg-pool takes it as its `Client`). */
  tracking(Base: ClientCtor): ClientCtor {
    const clients = this.clients;
    return class OwnClient extends Base {
      constructor(...args: ConstructorParameters<ClientCtor>) {
        super(...args);
        clients.add(this);
        this.once('end', () => clients.delete(this));
      }
    };
  }

  /** Each connection's socket destroyed, connecting ones too (their connect then fails). */
  sever(): void {
    for (const client of this.clients) {
      severSocket((client as unknown as { connection?: { stream?: Socket } }).connection?.stream);
    }
    this.clients.clear();
  }
}
