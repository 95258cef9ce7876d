/** What a route of the admin is and receives: shared by the router and the route tables (pages, api). */
import type { AdminJobs } from './actions.ts';
import type { AdminOptions, AdminRequest, AdminResponse, BodyFields } from './types.ts';

/** The admin's settings, validated once at mount. */
export interface Settings {
  bulkCap: number;
  countCap: number;
  title: string;
  allowedHosts: ReadonlySet<string>;
  secret: Buffer;
  onError: NonNullable<AdminOptions<unknown>['onError']>;
}

export interface RouteContext {
  req: AdminRequest;
  params: string[];
  body: BodyFields;
  jobs: AdminJobs;
  access: 'manage' | 'view';
  csrf: string;
  settings: Settings;
}

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  pattern: RegExp;
  handler: (c: RouteContext) => Promise<AdminResponse>;
}
