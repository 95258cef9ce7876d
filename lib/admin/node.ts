/** What the Express and Koa adapters share on Node's own request and response. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { BodyFields } from './types.ts';
import { fromParsed, readBody } from './body.ts';

/** The path and query of a request URL as sent: no URL parsing, so no dot-segment or '//' rewriting. */
export function splitUrl(url: string | undefined): { path: string; query: URLSearchParams } {
  const raw = url || '/';
  const q = raw.indexOf('?');
  return q < 0 ? { path: raw, query: new URLSearchParams() } : { path: raw.slice(0, q), query: new URLSearchParams(raw.slice(q + 1)) };
}

/** The path of a request URL as sent, also in absolute form (`GET http://host/path`, as a proxy receives it). */
export function originalPath(url: string | undefined): string {
  const { path } = splitUrl(url);
  return path.startsWith('/') ? path : path.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '') || '/';
}

export function isEncrypted(req: IncomingMessage): boolean {
  return (req.socket as TLSSocket).encrypted === true;
}

/**
 * The body: the host's parsed one when its parser consumed the stream, else read here. Parsers
 * that skip a content type they do not handle still leave req.body = {} (body-parser 1.x under
 * Express 4, koa-bodyparser), so an object alone does not mean the body was read.
 */
export async function requestBody(req: IncomingMessage, parsed: unknown): Promise<BodyFields> {
  const consumed = req.readableEnded || (req as { _body?: unknown })._body === true;
  return (consumed ? fromParsed(parsed) : null) ?? readBody(req);
}

/**
 * A host's permissive CORS middleware (cors() answers every origin) must not open the admin to
 * other sites' scripts: its Access-Control-* headers are removed from the admin's answers.
 */
export function stripCors(res: ServerResponse): void {
  for (const name of res.getHeaderNames()) if (name.startsWith('access-control-')) res.removeHeader(name);
}
