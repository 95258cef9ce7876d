/**
 * A real PgBouncer in front of the local PostgreSQL, with its stock settings (no
 * ignore_startup_parameters), started as user postgres on a free port for one suite.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PG_URL, until } from './dialects.ts';
import { isCI } from './ci.ts';

export const PGBOUNCER = '/usr/sbin/pgbouncer';

export interface PgBouncer {
  /** The same database as PG_URL, through the pooler. */
  url: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Why PgBouncer cannot run here (null when it can): a failure in CI, a loud skip elsewhere. */
export function pgbouncerMissing(): string | null {
  if (!fs.existsSync(PGBOUNCER)) return `${PGBOUNCER} is missing (apt-get install -y pgbouncer)`;
  return null;
}

export async function startPgBouncer(poolMode: 'session' | 'transaction' = 'session'): Promise<PgBouncer> {
  const missing = pgbouncerMissing();
  if (missing) throw new Error(isCI() ? `CI: ${missing}` : missing);
  const target = new URL(PG_URL);
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqljobs-pgbouncer-'));
  const db = target.pathname.slice(1);
  fs.writeFileSync(path.join(dir, 'users.txt'), `"${target.username || 'postgres'}" ""\n`);
  fs.writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `${db} = host=${target.hostname} port=${target.port || 5432} dbname=${db}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'users.txt')}`,
      `pool_mode = ${poolMode}`,
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
    ].join('\n'),
  );
  // PgBouncer refuses to run as root.
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
  fs.chownSync(dir, uid, gid);
  for (const f of fs.readdirSync(dir)) fs.chownSync(path.join(dir, f), uid, gid);
  const child: ChildProcess = spawn(PGBOUNCER, [path.join(dir, 'pgbouncer.ini')], { uid, gid, stdio: 'ignore' });
  await until(() => new Promise<boolean>((r) => net.connect(port, '127.0.0.1').once('connect', function (this: net.Socket) { this.end(); r(true); }).once('error', () => r(false))), 'PgBouncer to listen', 10_000, 50);
  const url = new URL(PG_URL);
  url.port = String(port);
  return {
    url: url.toString(),
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
