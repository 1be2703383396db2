/**
 * The routes the region's port and its operator port (src/operator/listener.ts) both serve, built once:
 * liveness and readiness, and what every /admin route passes first.
 */
import { Router, type RequestHandler } from 'express';
import { adminAuth } from '../http/admin-auth';
import { refuseUnstorableInput } from '../http/storable-text';
import type { ReadinessReport } from '../observability/readiness';

export interface HealthDeps {
  region: string;
  /** Liveness details; `status: 'stalled'` (the operator port's, when the main thread stopped publishing) answers 503. */
  health: () => Promise<Record<string, unknown>>;
  /** Readiness: the database answers and is migrated. */
  readiness: () => Promise<ReadinessReport>;
}

/** GET /healthz and GET /readyz (no credentials). */
export function healthRoutes(d: HealthDeps): Router {
  const router = Router();
  router.get('/healthz', async (_req, res) => {
    const details = await d.health();
    res.status(details.status === 'stalled' ? 503 : 200).json({ status: 'ok', region: d.region, pid: process.pid, ...details });
  });
  router.get('/readyz', async (_req, res) => {
    const report = await d.readiness();
    res.status(report.ready ? 200 : 503).json({ region: d.region, ...report });
  });
  return router;
}

/**
 * What every /admin route passes first: storable input, the admin token. (No cache may keep an admin answer,
 * some carry secrets: every answer says so already, request-id.ts.)
 */
export function adminGuard(adminTokens: readonly string[]): RequestHandler[] {
  return [refuseUnstorableInput(), adminAuth(adminTokens)];
}
