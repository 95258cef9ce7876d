/** A package of the app's, or null when it is not installed. Loaded synchronously (createRequire, no top-level await), so that createJobs stays synchronous. */
import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';

export function optionalPackage<T>(name: string): T | null {
  try {
    return createRequire(import.meta.url)(name) as T;
  } catch {
    return null;
  }
}

/**
 * Where @opentelemetry/api 1.x keeps what an app registered (tracer or meter provider, context
 * manager, propagator): absent until the first registration, by any copy of the API.
 */
const OTEL_GLOBAL = Symbol.for('opentelemetry.js.api.1');

let otel: typeof OtelApi | null | undefined;

/**
 * @opentelemetry/api, loaded once the app has registered something with it, else null. Before
 * that every call of the API is a no-op, and loading it cost about 7 MB of memory (issue 17).
 */
export function registeredOtelApi(): typeof OtelApi | null {
  if (otel !== undefined) return otel;
  if ((globalThis as Record<symbol, unknown>)[OTEL_GLOBAL] === undefined) return null;
  return (otel = optionalPackage<typeof OtelApi>('@opentelemetry/api'));
}
