/**
 * Whether the tests run in CI, where a missing database, browser or tool is a failure and never a
 * skip. CI services set CI to "true", "1" or their own name: any value but empty or "false" counts.
 */
export function isCI(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env.CI ?? '').trim().toLowerCase();
  return v !== '' && v !== 'false';
}
