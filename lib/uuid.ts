import { randomFillSync } from 'node:crypto';

/**
 * UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then a 12-bit counter that keeps ids generated
 * within one millisecond of this process in order, then 62 random bits. Text order equals
 * creation order, which is what list() and the keyset cursors rely on.
 */
const pool = Buffer.alloc(16 * 256);
let poolOffset = pool.length;
let lastMs = 0;
let counter = 0;
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/**
 * The id's text is written into one buffer and read out as one flat string: built by
 * concatenation it cost ~0.9 KB of garbage per id (3 % of a bulk enqueue's profile on SQLite).
 * The time's twelve digits are written only when the millisecond changes.
 */
const text = Buffer.from('00000000-0000-7000-8000-000000000000', 'latin1');
/** Where byte n of the id goes in its text (the dashes come after bytes 3, 5, 7 and 9). */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

function put(n: number, byte: number): void {
  text[AT[n]] = HEX[byte >>> 4];
  text[AT[n] + 1] = HEX[byte & 0x0f];
}

function putTime(ms: number): void {
  put(0, Math.floor(ms / 2 ** 40) & 0xff);
  put(1, Math.floor(ms / 2 ** 32) & 0xff);
  put(2, (ms >>> 24) & 0xff);
  put(3, (ms >>> 16) & 0xff);
  put(4, (ms >>> 8) & 0xff);
  put(5, ms & 0xff);
}

/** Fresh random bytes: 16 a call are taken from a pool refilled 256 ids at a time. */
function randomOffset(): number {
  if (poolOffset >= pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  poolOffset += 16;
  return poolOffset - 16;
}

export function uuidv7(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    counter = 0;
    putTime(lastMs);
  } else {
    counter++;
    if (counter > 0xfff) {
      // More than 4096 ids in one millisecond: borrow the next millisecond to stay ordered.
      lastMs++;
      counter = 0;
      putTime(lastMs);
    }
  }
  const r = randomOffset();
  put(6, 0x70 | (counter >>> 8));
  put(7, counter & 0xff);
  put(8, 0x80 | (pool[r + 8] & 0x3f));
  for (let n = 9; n < 16; n++) put(n, pool[r + n]);
  return text.toString('latin1');
}
