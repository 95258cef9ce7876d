/** A package of the app's, or null when it is not installed. Loaded synchronously (createRequire, no top-level await), so that createJobs stays synchronous. */
import { createRequire } from 'node:module';

export function optionalPackage<T>(name: string): T | null {
  try {
    return createRequire(import.meta.url)(name) as T;
  } catch {
    return null;
  }
}
