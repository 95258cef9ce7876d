/** Reading a form or JSON body once, within a size limit, whether or not the host already parsed it. */
import type { IncomingMessage } from 'node:http';
import { HttpError, type BodyFields } from './types.ts';

const LIMIT = 256 * 1024;
/** Read (and dropped) of a body over LIMIT before its 413 is sent: more, and the connection is given up. */
const DRAIN_LIMIT = 16 * 1024 * 1024;

/**
 * A body the host's own parser already produced (express.urlencoded/json, koa-bodyparser), as
 * fields. An object one level down becomes dotted fields, so that a JSON API's
 * { rateLimit: { limit: 10 } } reads as the form's rateLimit.limit.
 */
export function fromParsed(body: unknown, depth = 0): BodyFields | null {
  if (body === null || typeof body !== 'object' || Buffer.isBuffer(body)) return null;
  const out: BodyFields = {};
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    if (typeof v === 'string') out[k] = v;
    else if (typeof v === 'boolean' || typeof v === 'number') out[k] = String(v);
    // Each item as text, so that validation names what is not one (a number among ids was dropped silently).
    else if (Array.isArray(v)) out[k] = v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x) ?? String(x)));
    else if (depth === 0) for (const [k2, v2] of Object.entries(fromParsed(v, 1) ?? {})) out[`${k}.${k2}`] = v2;
  }
  return out;
}

/** Read and parse the request stream (application/x-www-form-urlencoded or application/json). */
export async function readBody(req: IncomingMessage): Promise<BodyFields> {
  if (req.readableEnded) return {};
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    // Past the limit the rest is read and dropped, so that the 413 reaches a client on a kept-alive
    // connection (left unread, the client's next writes met a reset: ECONNRESET instead of the
    // answer); past DRAIN_LIMIT the connection is not worth keeping.
    if (size <= LIMIT) chunks.push(chunk as Buffer);
    else if (size > DRAIN_LIMIT) throw new HttpError(413, `request body over ${LIMIT} bytes`);
  }
  if (size > LIMIT) throw new HttpError(413, `request body over ${LIMIT} bytes`);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  const type = String(req.headers['content-type'] ?? '');
  if (type.startsWith('application/json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new HttpError(400, 'the body is not valid JSON');
    }
    return fromParsed(parsed) ?? {};
  }
  const out: BodyFields = {};
  for (const [k, v] of new URLSearchParams(text)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}
