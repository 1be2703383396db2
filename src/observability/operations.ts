import type { Operation } from '../openapi/operation';
import { HealthStatus, ReadinessStatus } from './schema';

const tags = ['Operations'];

/** Said of every route the operator port also serves. */
export const OPERATOR_PORT_NOTE =
  "Also served on the region's operator port (`operatorPort`, src/operator/listener.ts) by a thread of its own, which answers while the region's port is flooded.";

/** The OpenAPI operations of the app's own routes (src/app.ts): liveness, readiness, metrics. */
export const observabilityOperations: Operation[] = [
  {
    method: 'get', path: '/healthz', tags, auth: 'none', dialect: 'slashid',
    summary: 'Liveness: the process answers',
    description: OPERATOR_PORT_NOTE,
    responses: {
      200: { description: 'Alive.', schema: HealthStatus },
      503: { description: "Only on the operator port: the region's main thread has published no figures for 30 s.", schema: HealthStatus },
    },
  },
  {
    method: 'get', path: '/readyz', tags, auth: 'none', dialect: 'slashid',
    summary: 'Readiness: the database answers and carries every migration (Redis is reported, not required)',
    description: OPERATOR_PORT_NOTE,
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
