/** The admin's framework-neutral request and response, and its options. */
import type { IncomingHttpHeaders } from 'node:http';

/** What an authorize function grants: every page and action, read-only pages, or nothing (403). */
export type AdminAccess = 'manage' | 'view' | false;

export interface AdminOptions<Req> {
  /**
   * Decide per request. 'manage': everything; 'view': read-only (no action buttons, every action
   * refused); false: 403. Without it, only loopback clients (the socket's own address, never a
   * forwarded header) are served, with 'manage'.
   */
  authorize?: (req: Req) => AdminAccess | Promise<AdminAccess>;
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
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The mount point as the browser sees it (no trailing slash), for links. */
  base: string;
  /** The TCP peer's address (the socket's, never X-Forwarded-For). */
  remoteAddress: string | undefined;
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
