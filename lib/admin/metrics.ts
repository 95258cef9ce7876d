/** `GET metrics`: this instance's prom-client registry in the Prometheus text format, for scrapers. */
import type { AdminJobs } from './actions.ts';
import { resolveMetricsAccess } from './access.ts';
import type { Settings } from './route.ts';
import { HttpError, type AdminOptions, type AdminRequest, type AdminResponse } from './types.ts';

export const METRICS_PATH = '/metrics';

export async function serveMetrics<Req>(jobs: AdminJobs, opts: AdminOptions<Req>, settings: Settings, req: AdminRequest, raw: Req): Promise<AdminResponse> {
  await resolveMetricsAccess(opts, settings.allowedHosts, req, raw);
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `method ${req.method} not allowed here`);
  const registry = jobs.metricsRegistry?.() ?? null;
  if (!registry) throw new HttpError(404, 'not found: metrics are off for this instance (createJobs metrics: false)');
  return { status: 200, headers: { 'content-type': registry.contentType }, body: await registry.metrics() };
}
