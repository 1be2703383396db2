/** Schemas of the liveness and readiness answers, for the OpenAPI document. */
import { Type } from '@sinclair/typebox';

export const HealthStatus = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('stalled')], {
      description: "stalled (503): only on the operator port, when the region's main thread has published no figures for 30 s (its event loop is stuck).",
    }),
    region: Type.String(),
    pid: Type.Integer({ description: 'The region process id (to pause it in a demo).' }),
    redis: Type.String({ description: "ioredis' connection status, e.g. ready or reconnecting." }),
    main_thread: Type.Optional(
      Type.Object(
        { snapshot_age_ms: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]) },
        { additionalProperties: false, description: "Only on the operator port: how old the main thread's last published figures are (null: none yet)." },
      ),
    ),
  },
  { additionalProperties: false },
);

export const ReadinessStatus = Type.Object(
  {
    region: Type.String(),
    ready: Type.Boolean(),
    database: Type.Union([Type.Literal('ok'), Type.Literal('read-only'), Type.Literal('unreachable'), Type.Literal('missing')], {
      description:
        'read-only: the database answers but takes no writes (a standby, or set read-only); the region is not ready (503), as every write would fail. missing: the database does not exist (dropped): restart the region, which creates and migrates it, then re-seed it.',
    }),
    missing_migrations: Type.Union([Type.Array(Type.String()), Type.Null()], { description: 'Null when the database does not answer.' }),
    redis: Type.Object({ reachable: Type.Boolean(), status: Type.String() }, { additionalProperties: false }),
    draining: Type.Optional(
      Type.Literal(true, { description: 'Only while the region drains after SIGTERM (503): it takes no new connections; send traffic elsewhere.' }),
    ),
    stalled: Type.Optional(
      Type.Literal(true, {
        description: "Only on the operator port (503), while the region's main thread has published no figures for 30 s (its event loop is stuck; the region's port does not answer).",
      }),
    ),
    starting: Type.Optional(
      Type.Literal(true, { description: "Only on the operator port (503), until the region's own port listens (it starts after its start-up checks)." }),
    ),
    joining: Type.Optional(
      Type.Literal(true, {
        description: 'Only while the region is a joining member: added to a running deployment, restored from a backup, or found with changes trimmed from its inbox unread, it lacks changes until it is re-seeded (npm run reseed; needs_reseed in GET /admin/replication). Not ready (503) then while another member is active; when none is (every region joining) it stays ready, serving what it holds. The image\'s health check counts it healthy: it needs a re-seed, not a restart.',
      }),
    ),
  },
  { additionalProperties: false },
);
