/**
 * The bare NOTIFY round trip on PostgreSQL, the floor under any LISTEN/NOTIFY wake-up: one client
 * LISTENs, another runs `SELECT pg_notify(...)` (its own transaction, committed), and the time from
 * sending it to the listener's notification is recorded. L rounds 20 ms apart, as bench/measure.ts
 * --measure latency spaces its jobs. With --write the NOTIFY rides with a one-row INSERT (a table
 * made for the run and dropped after), so the commit waits for its WAL flush as an enqueue's does.
 *   node --import tsx bench/notify-round-trip.ts [--rounds 200] [--write]
 */
import { parseArgs } from 'node:util';
import { newRunId } from './lib/config.ts';
import { newClient } from './lib/pg.ts';
import { percentile, sleep } from './lib/stats.ts';

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '200' }, write: { type: 'boolean', default: false } } });
const rounds = Number(args.rounds);
const channel = newRunId();
const listener = await newClient();
const sender = await newClient();
await listener.query(`LISTEN "${channel}"`);
if (args.write) await sender.query(`CREATE TABLE ${channel} (id bigserial PRIMARY KEY, payload json)`);
const send = args.write
  ? `WITH ins AS (INSERT INTO ${channel} (payload) VALUES ('{}') RETURNING id) SELECT pg_notify($1, $2) FROM ins`
  : 'SELECT pg_notify($1, $2)';
let heard: (() => void) | null = null;
listener.on('notification', () => heard?.());
const rtt: number[] = [];
for (let i = 0; i < rounds; i++) {
  const got = new Promise<void>((r) => (heard = r));
  const t0 = performance.now();
  await sender.query(send, [channel, String(i)]);
  await got;
  rtt.push(performance.now() - t0);
  await sleep(20);
}
if (args.write) await sender.query(`DROP TABLE ${channel}`);
await listener.end();
await sender.end();
console.log(`${args.write ? 'INSERT + NOTIFY (committed, WAL flushed)' : 'NOTIFY'} round trip over ${rounds} rounds: p50 ${percentile(rtt, 50).toFixed(3)} ms, p95 ${percentile(rtt, 95).toFixed(3)} ms, p99 ${percentile(rtt, 99).toFixed(3)} ms`);
