/**
 * An app route as a job (ServiceStack's EnqueueApi): jobs.enqueueRequest stores a request; a
 * worker in a process that called jobs.useApp(app) runs it through the app in-process, with
 * light-my-request (no socket), and the response is the job's result. A 5xx or a thrown error is
 * a failed attempt (retried); a 4xx fails for good.
 *
 * The user the request runs for reaches the app's own middleware through jobRequest(req), which
 * knows only the request objects the worker injected (by identity, not by a header), so no
 * client on the network can claim a job's user.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { JobValidationError, describe, toJson, type JsonValue } from '../model.ts';
import { DiscardJob, type JobContext } from '../worker/context.ts';

/** The job name requests run under (reserved: useApp defines it). */
export const REQUEST_JOB = 'sqljobs.request';

export interface JobRequestInit {
  /** GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS. */
  method: string;
  /** A path with its query, e.g. `/orders/42/invoice?lang=en`. */
  url: string;
  /** JSON (sent as application/json) or text. */
  body?: JsonValue;
  headers?: Record<string, string>;
  /** The user the request runs for: the job's userId, and jobRequest(req).userId in the app. */
  userId?: string;
}

/** What a request job answers: its response. */
export interface JobRequestResult {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  /** Parsed JSON when the response says application/json; text otherwise; null when it was over maxOutputBytes. */
  body: unknown;
  /** Only when the body was not stored (over maxOutputBytes): its size in bytes. */
  bodyBytes?: number;
}

/** What the app sees of a request a job runs (jobRequest(req)). */
export interface JobRequestInfo {
  jobId: string;
  userId: string | null;
  attempt: number;
}

/** An Express app, a Koa app, or any (req, res) handler. */
export type AppLike = RequestListener | ((req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => unknown) | { callback(): RequestListener };

const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']);
/** An HTTP field name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** The requests a worker injected, with their job: only the worker's own wrapper adds to it. */
const injected = new WeakMap<IncomingMessage, JobRequestInfo>();

type Inject = typeof import('light-my-request');
let injectModule: Inject | null = null;
function lightMyRequest(): Inject {
  injectModule ??= createRequire(import.meta.url)('light-my-request') as Inject;
  return injectModule;
}

/** The job a request was injected for, or null for any request that came from the network. */
export function jobRequest(req: IncomingMessage): JobRequestInfo | null {
  return injected.get(req) ?? null;
}

/** The app as a (req, res) listener; what it returns (a plain async handler's promise) is kept. */
export type Dispatch = (req: IncomingMessage, res: ServerResponse) => unknown;

/** The app as a (req, res) listener. */
export function dispatcherOf(app: unknown): Dispatch {
  if (app !== null && typeof app === 'object' && typeof (app as { callback?: unknown }).callback === 'function') {
    return (app as { callback(): RequestListener }).callback(); // Koa
  }
  // Wrapped, never handed over as it is: see keepInjectedMethods. An Express app answers what no
  // route matched itself (its final handler) when given no `next`.
  if (typeof app === 'function') return (req, res) => (app as Dispatch)(req, res);
  throw new TypeError(`useApp: app must be an Express app, a Koa app or a (req, res) handler; got ${describe(app)}`);
}

/** The request as stored (validated now, so a bad one is refused at enqueue). */
export function requestPayload(init: unknown): Omit<JobRequestInit, 'userId'> {
  if (init === null || typeof init !== 'object') throw new TypeError(`enqueueRequest: the request must be an object { method, url, body?, headers?, userId? }; got ${describe(init)}`);
  const r = init as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!['method', 'url', 'body', 'headers', 'userId'].includes(key)) throw new JobValidationError(`enqueueRequest: ${key} is not a request field; allowed: method, url, body, headers, userId`, key, REQUEST_JOB);
  }
  const method = typeof r.method === 'string' ? r.method.toUpperCase() : '';
  if (!METHODS.has(method)) throw new JobValidationError(`enqueueRequest: method must be one of ${[...METHODS].join(', ')}; got ${describe(r.method)}`, 'method', REQUEST_JOB);
  // No whitespace or control characters: a request line cannot carry them (Node's own server refuses them).
  if (typeof r.url !== 'string' || !r.url.startsWith('/') || r.url.startsWith('//') || r.url.length > 8000 || /[\s\x00-\x1f\x7f]/.test(r.url)) {
    throw new JobValidationError(`enqueueRequest: url must be a path starting with / (at most 8000 characters, no spaces or control characters); got ${describe(r.url)}`, 'url', REQUEST_JOB);
  }
  const headers = r.headers ?? {};
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers) || Object.values(headers).some((v) => typeof v !== 'string')) {
    throw new JobValidationError(`enqueueRequest: headers must be an object of string values; got ${describe(r.headers)}`, 'headers', REQUEST_JOB);
  }
  for (const [name, value] of Object.entries(headers as Record<string, string>)) {
    if (!HEADER_NAME.test(name)) throw new JobValidationError(`enqueueRequest: header name ${JSON.stringify(name)} is not an HTTP token`, 'headers', REQUEST_JOB);
    if (/[\r\n\x00]/.test(value)) throw new JobValidationError(`enqueueRequest: header ${name}'s value holds a line break or NUL`, 'headers', REQUEST_JOB);
  }
  const out: Omit<JobRequestInit, 'userId'> = { method, url: r.url, headers: headers as Record<string, string> };
  if (r.body !== undefined) out.body = r.body as JsonValue;
  return out;
}

/** The handler of REQUEST_JOB: the request through the app, its response as the result. */
export function requestHandler(dispatch: Dispatch, maxResultBytes: number) {
  return async (payload: Omit<JobRequestInit, 'userId'>, ctx: JobContext): Promise<JobRequestResult> => {
    const info: JobRequestInfo = { jobId: ctx.id, userId: ctx.userId, attempt: ctx.attempt };
    const withInfo: RequestListener = (req, res) => {
      injected.set(req, info);
      keepInjectedMethods(req);
      keepInjectedMethods(res);
      canDestroySocket(req, res);
      dispatchOrFail(dispatch, req, res);
    };
    const res = await lightMyRequest()(withInfo, {
      method: payload.method as 'GET',
      url: payload.url,
      headers: payload.headers,
      ...(payload.body === undefined ? {} : { payload: typeof payload.body === 'string' ? payload.body : (payload.body as object) }),
      signal: ctx.signal,
    });
    const result: JobRequestResult = { status: res.statusCode, headers: res.headers, body: bodyOf(res.headers['content-type'], res.payload) };
    // The route ran: a body too large to store must not fail the attempt (a retry would run the route again).
    if (!storable(result, maxResultBytes)) Object.assign(result, { body: null, bodyBytes: Buffer.byteLength(res.payload, 'utf8') });
    const what = `${payload.method} ${payload.url} answered ${res.statusCode}`;
    if (res.statusCode >= 500) throw Object.assign(new Error(what), { status: res.statusCode, body: result.body });
    if (res.statusCode >= 400) throw new DiscardJob(what);
    return result;
  };
}

/**
 * A plain handler that throws or rejects answers nothing (Express and Koa turn theirs into a 500
 * themselves): the response is destroyed with the error, so light-my-request rejects with it and
 * the attempt fails (retried) instead of waiting for an answer that never comes, and the rejection
 * is never left unhandled.
 */
function dispatchOrFail(dispatch: Dispatch, req: IncomingMessage, res: ServerResponse): void {
  const fail = (err: unknown) => void res.destroy(err instanceof Error ? err : new Error(`the app threw ${describe(err)}`));
  try {
    const answer = dispatch(req, res);
    if (isThenable(answer)) answer.then(undefined, fail);
  } catch (err) {
    fail(err);
  }
}

/** Whether the result can be stored as it is: JSON a database holds (no NUL, at most 31 levels deep), within maxOutputBytes. */
function storable(result: JobRequestResult, maxBytes: number): boolean {
  try {
    return Buffer.byteLength(toJson(REQUEST_JOB, 'result', result), 'utf8') <= maxBytes;
  } catch {
    return false; // a binary body (a PDF holds NULs), or JSON nested too deep
  }
}

/**
 * light-my-request's socket has no destroy(), which Express's final handler calls on an error
 * after the response started (next(err) after res.write, res.json twice): an uncaught TypeError
 * that ended the worker's process, on every retry. Here it ends the response with the error, as
 * a real socket would (the attempt fails), or does nothing once the response is complete.
 */
function canDestroySocket(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket as unknown as Record<string, unknown> | null;
  if (!socket || typeof socket.destroy === 'function') return;
  const destroy = (err?: unknown) => {
    if (!res.writableFinished) res.destroy(err instanceof Error ? err : new Error('the app closed the connection before its response ended'));
    return socket;
  };
  Object.defineProperty(socket, 'destroy', { value: destroy, writable: true, configurable: true });
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * Express swaps each request's and response's prototype for its own: an injected response would
 * lose light-my-request's write/end, and its body would never be seen. Their methods are copied
 * onto the objects first, where a prototype swap cannot reach them. (Handing the Express app to
 * light-my-request instead makes it rewire Express's shared prototypes for good, which breaks the
 * app's real HTTP traffic: dispatcherOf never does.)
 */
function keepInjectedMethods(target: object): void {
  const proto = Object.getPrototypeOf(target) as object;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const method = Object.getOwnPropertyDescriptor(proto, name)?.value;
    if (name === 'constructor' || typeof method !== 'function' || Object.hasOwn(target, name)) continue;
    Object.defineProperty(target, name, { value: method, writable: true, configurable: true });
  }
}

function bodyOf(contentType: unknown, text: string): unknown {
  if (typeof contentType === 'string' && /\bjson\b/i.test(contentType) && text.length) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

