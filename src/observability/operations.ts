import type { Operation } from '../openapi/operation';
import { HealthStatus, ReadinessStatus } from './schema';

const tags = ['Operations'];

/** The OpenAPI operations of the app's own routes (src/app.ts): liveness, readiness, metrics. */
export const observabilityOperations: Operation[] = [
  {
    method: 'get', path: '/healthz', tags, auth: 'none', dialect: 'slashid',
    summary: 'Liveness: the process answers',
    responses: { 200: { description: 'Alive.', schema: HealthStatus } },
  },
  {
    method: 'get', path: '/readyz', tags, auth: 'none', dialect: 'slashid',
    summary: 'Readiness: the database answers and carries every migration (Redis is reported, not required)',
    responses: {
      200: { description: 'Ready.', schema: ReadinessStatus },
      503: { description: 'Not ready: the database does not answer or lacks migrations.', schema: ReadinessStatus },
    },
  },
  {
    method: 'get', path: '/metrics', tags, auth: 'admin', dialect: 'slashid',
    summary: 'Prometheus metrics of this region',
    responses: { 200: { description: 'Prometheus text exposition format.', contentType: 'text/plain' } },
    errors: [401],
  },
];
