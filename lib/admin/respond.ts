/** Building the admin's answers. */
import type { AdminResponse } from './types.ts';

export function html(status: number, body: string): AdminResponse {
  return { status, headers: { 'content-type': 'text/html; charset=utf-8' }, body };
}

export function json(status: number, value: unknown): AdminResponse {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8' }, body: JSON.stringify(value) };
}

/** 303 See Other after a form post (the browser then GETs the page). */
export function redirect(location: string): AdminResponse {
  return { status: 303, headers: { location, 'content-type': 'text/plain; charset=utf-8' }, body: `See ${location}` };
}
