/** The admin's framework-neutral request and response, and its options. */
import type { IncomingHttpHeaders } from 'node:http';

/** What an authorize function grants: every page and action, read-only pages, or nothing (403). */
export type AdminAccess = 'manage' | 'view' | false;

/** What metricsAuthorize answers: true (or what authorize grants) serves `GET metrics`, false is 403. */
export type MetricsAccess = AdminAccess | true;

export interface AdminOptions<Req> {
  /**
   * Decide per request. 'manage': everything; 'view': read-only (no action buttons, every action
   * refused); false: 403. Without it, only direct loopback clients are served, with 'manage': the
   * socket's address is loopback, the request carries no proxy header (Forwarded, Via, X-Real-IP,
   * X-Forwarded-*) and its Host is a loopback name. Behind a proxy, pass authorize.
   */
  authorize?: (req: Req) => AdminAccess | Promise<AdminAccess>;
  /**
   * Decides alone who may read `GET metrics`, the Prometheus endpoint (a scraper has no session
   * and no CSRF token; it may send a bearer token): true, 'view' or 'manage' serves it, false is
   * 403. Without it, `GET metrics` follows authorize, or the loopback rule without authorize.
   */
  metricsAuthorize?: (req: Req) => MetricsAccess | Promise<MetricsAccess>;
  /** More Host names (without port) a loopback client may use without authorize, e.g. ['myapp.test']. */
  allowedHosts?: string[];
  /**
   * Key of the CSRF tokens' HMAC, at least 32 characters. Default: random per process. Give every
   * instance behind a load balancer the same one, or a page served by one is refused by another.
   */
  secret?: string;
  /**
   * Called with an unexpected error (authorize or the database threw); the client sees only
   * "internal error (id …)". Default: console.error.
   */
  onError?: (err: unknown, info: { id: string; method: string; path: string }) => void;
  /** Jobs "apply to all matching" touches at most this many (default 1000, at most 10,000). */
  bulkCap?: number;
  /** Finished jobs are counted per state up to this many on the overview (default 10,000). */
  countCap?: number;
  /** Page title. Default "sqljobs". */
  title?: string;
}

/** Form fields or a JSON object's top-level string values. */
export type BodyFields = Record<string, string | string[]>;

export interface AdminRequest {
  method: string;
  /** Path below the mount point, starting with '/'. */
  path: string;
  /**
   * The whole path as the client sent it, mount included (Express req.originalUrl, Koa
   * ctx.originalUrl): Express 4 routes `/admin/jobs//api` to the admin as `/api`, so only this
   * shows the empty segment that took the request past a host's gate.
   */
  originalPath: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The mount point as the browser sees it (no trailing slash), for links. */
  base: string;
  /** The TCP peer's address (the socket's, never X-Forwarded-For). */
  remoteAddress: string | undefined;
  /** Whether the connection itself is TLS (the app serves HTTPS). */
  encrypted: boolean;
  readBody(): Promise<BodyFields>;
}

export interface AdminResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body: string | Buffer;
}

/** An error shown to the client with its status (400, 403, 404, 409) and message. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}
