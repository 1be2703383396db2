/** Schemas of the liveness and readiness answers, for the OpenAPI document. */
import { Type } from '@sinclair/typebox';

export const HealthStatus = Type.Object(
  {
    status: Type.Literal('ok'),
    region: Type.String(),
    pid: Type.Integer({ description: 'The region process id (to pause it in a demo).' }),
    redis: Type.String({ description: "ioredis' connection status, e.g. ready or reconnecting." }),
  },
  { additionalProperties: false },
);

export const ReadinessStatus = Type.Object(
  {
    region: Type.String(),
    ready: Type.Boolean(),
    database: Type.Union([Type.Literal('ok'), Type.Literal('unreachable')]),
    missing_migrations: Type.Union([Type.Array(Type.String()), Type.Null()], { description: 'Null when the database does not answer.' }),
    redis: Type.Object({ reachable: Type.Boolean(), status: Type.String() }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
