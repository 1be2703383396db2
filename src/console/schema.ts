/**
 * Schemas of the deployment console: the parts of a region's own status answers the console reads
 * (checked, so a peer running another version shows as "unreadable" rather than as zeros), and the
 * GET /admin/deployment answer.
 */
import { Type, type SchemaOptions, type Static, type TSchema } from '@sinclair/typebox';
import { compile } from '../http/validate';

const Nullable = <T extends TSchema>(t: T, options?: SchemaOptions) => Type.Union([t, Type.Null()], options);
const Time = Nullable(Type.String());
const Count = Type.Integer({ minimum: 0 });

// What a region answers (only the fields used here; others may be added freely).
export const PeerHealth = Type.Object({ status: Type.String(), region: Type.String(), redis: Type.Optional(Type.String()) });
export const PeerReadiness = Type.Object({ ready: Type.Boolean(), database: Type.String() });
export const PeerReplication = Type.Object({
  region: Type.String(),
  applied: Type.Array(
    Type.Object({
      origin_region: Type.String(),
      events_applied: Type.Integer(),
      last_change_id: Nullable(Type.String()),
      last_event_at: Time,
      last_applied_at: Time,
      lag_ms: Type.Integer(),
    }),
  ),
  pending: Type.Array(Type.Object({ region: Type.String(), pending_acks: Nullable(Type.Integer()), undelivered: Nullable(Type.Integer()), undelivered_is_bound: Type.Optional(Nullable(Type.Boolean())) })),
  stream: Type.Object({ connected: Type.Boolean(), dead_letters: Nullable(Type.Integer()), error: Nullable(Type.String()) }),
  outbox: Type.Object({ unpublished: Type.Integer(), unconfirmed: Type.Integer(), oldest_unpublished_at: Time }),
  failures: Type.Object({
    failing: Type.Integer(),
    parked: Type.Integer(),
    // Parked events per reason and per origin, and the oldest parked events (up to 20) for their origins and
    // reasons (read from older peers without parked_by_origin or parked_by_reason). Optional: absent from peers
    // of older versions.
    parked_by_reason: Type.Optional(Type.Record(Type.String(), Type.Integer())),
    parked_by_origin: Type.Optional(Type.Record(Type.String(), Type.Integer())),
    oldest_parked: Type.Optional(Type.Array(Type.Object({ origin_region: Type.String(), reason: Type.Optional(Type.String()) }))),
  }),
  waiting_requests: Type.Integer(),
  // Optional: a peer of an older version does not send them.
  needs_reseed: Type.Optional(Type.Array(Type.String())),
  members: Type.Optional(Type.Array(Type.Object({ region: Type.String(), state: Type.String() }))),
  start_check: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});
export const PeerMetadataRefresh = Type.Object({
  failing: Type.Integer(),
  /** Absent from regions of versions before the exact count (2026-12-07). */
  expired: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Of `expired`, those failing too. Absent from regions of versions before it (2026-12-07). */
  failing_expired: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Absent from regions of versions before adoption (2026-12-03). */
  adoption: Type.Optional(Type.Object({ departed: Type.Array(Type.String()), ready: Type.Boolean(), waiting: Nullable(Type.String()) })),
  credentials: Type.Array(
    Type.Object({
      credential_id: Type.String(),
      idp_metadata_url: Type.String(),
      last_error: Nullable(Type.String()),
      consecutive_failures: Type.Integer(),
      last_success_at: Time,
      /** Absent from regions of versions before metadata expiry (2026-12-07). */
      expired_since: Type.Optional(Time),
      held_since: Type.Optional(Time),
      next_at: Type.Optional(Type.String()),
    }),
  ),
});
export type PeerReplication = Static<typeof PeerReplication>;
export type PeerMetadataRefresh = Static<typeof PeerMetadataRefresh>;

export const checkHealth = compile(PeerHealth);
export const checkReadiness = compile(PeerReadiness);
export const checkReplication = compile(PeerReplication);
export const checkMetadataRefresh = compile(PeerMetadataRefresh);

// The GET /admin/deployment answer.
export const RegionStatus = Type.Object({
  id: Type.String(),
  url: Type.String(),
  /** /healthz answered within the timeout; null for a member this region's config does not list (not asked). */
  up: Nullable(Type.Boolean()),
  /** /readyz said ready (null when it did not answer). */
  ready: Nullable(Type.Boolean()),
  response_ms: Nullable(Type.Integer()),
  /** Why a figure is missing: the region or one of its status routes did not answer, or answered oddly. */
  problems: Type.Array(Type.String()),
  redis: Nullable(Type.String()),
  redis_down: Nullable(Type.String(), {
    description:
      "Why this region's Redis reads as not answering (its replication status could not read its stream, or its /healthz says its Redis is not ready), or null: nothing reaches it or leaves it then. Judged here from what the region answered, so a region of any version gets it; null when the region is down or was not read.",
  }),
  database: Nullable(Type.String()),
  replication: Type.Union([
    Type.Object({
      outbox_unpublished: Count,
      outbox_unconfirmed: Count,
      oldest_unpublished_at: Time,
      failing: Count,
      parked: Count,
      /** Of `parked`, those held for this region's upgrade (schema-ahead, unknown-table): expected during a rolling upgrade. */
      parked_for_upgrade: Count,
      dead_letters: Nullable(Type.Integer()),
      stream_connected: Type.Boolean(),
      waiting_requests: Count,
    }),
    Type.Null(),
  ]),
  metadata_refresh: Type.Union([
    Type.Object({
      failing: Count,
      /** The first few failing credentials. */
      failures: Type.Array(
        Type.Object({
          credential_id: Type.String(),
          idp_metadata_url: Type.String(),
          consecutive_failures: Type.Integer(),
          last_error: Nullable(Type.String()),
          last_success_at: Time,
          /** The applied document's validUntil once past (sign-ins with it are refused); null while valid, or not said. */
          expired_since: Time,
        }),
      ),
      expired: Type.Integer({
        minimum: 0,
        description:
          "Credentials the region refreshes whose stored IdP metadata is past its validUntil (sign-ins refused, 409 idp_metadata_expired), failing or not: all of them (its GET /admin/metadata-refresh's `expired`), or, from a region of a version before that count, those among the credentials it lists (up to 500: failing first, then held, then by schedule; `expired_is_bound` then says so).",
      }),
      expired_is_bound: Type.Optional(
        Type.Literal(true, {
          description:
            'Only when true: `expired` is a lower bound, counted among the credentials the region lists, as its version does not count them all (and the region lists 500, so some may be left out).',
        }),
      ),
      failing_expired: Type.Integer({
        minimum: 0,
        description:
          "Of `expired`, the credentials whose refreshes are failing too (counted in `failing` as well, so `expired` − `failing_expired` expired while their refreshes do not fail): all of them (its GET /admin/metadata-refresh's `failing_expired`), or, from a region of a version before that count, those among the credentials it lists (`failing_expired_is_bound` then says when some failing ones are not listed).",
      }),
      failing_expired_is_bound: Type.Optional(
        Type.Literal(true, {
          description:
            'Only when true: `failing_expired` is a lower bound, counted among the failing credentials the region lists, as its version does not count them all and it lists fewer than `failing`.',
        }),
      ),
      expired_credentials: Type.Array(
        Type.Object({
          credential_id: Type.String(),
          idp_metadata_url: Type.String(),
          expired_since: Type.String(),
          held_since: Time,
          next_at: Time,
        }),
        {
          description:
            'The first few expired credentials whose refreshes are not failing (held, or not due yet); the failing ones are in `failures`, with their `expired_since`.',
        },
      ),
    }),
    Type.Null(),
  ]),
  /**
   * Entries of the shared stream not yet applied by this region (null: no region could read the stream);
   * `undelivered_is_bound` (only when true): `undelivered` is the inbox's length, an upper bound, where Redis
   * could not count the group's lag (GET /admin/replication's field of that name).
   */
  backlog: Type.Union([Type.Object({ undelivered: Nullable(Type.Integer()), pending_acks: Nullable(Type.Integer()), undelivered_is_bound: Type.Optional(Type.Literal(true)) }), Type.Null()]),
});

export const LagCell = Type.Object({
  origin: Type.String(),
  region: Type.String(),
  /** down: the region did not answer; behind: it has not applied the origin's newest event any region has. */
  state: Type.Union([Type.Literal('down'), Type.Literal('behind'), Type.Literal('caught-up'), Type.Literal('unknown')]),
  /** Event time between the origin's newest event seen anywhere and the newest this region applied. */
  behind_ms: Nullable(Type.Integer()),
  /** Commit-to-apply time of the last event from the origin this region applied. */
  last_lag_ms: Nullable(Type.Integer()),
  last_applied_at: Time,
});

export const DeploymentStatus = Type.Object({
  region: Type.String(),
  generated_at: Type.String(),
  timeout_ms: Type.Integer(),
  regions: Type.Array(RegionStatus),
  lag: Type.Array(LagCell),
});
export type RegionStatus = Static<typeof RegionStatus>;
export type LagCell = Static<typeof LagCell>;
export type DeploymentStatus = Static<typeof DeploymentStatus>;
