/**
 * The schema of the deployment's regions file (regions.config.json) and the types derived from it. Read,
 * checked and merged with the environment in src/config.ts, which checks it with the validator compiled from
 * ConfigFileSchema (src/config-validate.ts, written by scripts/config-validator.ts): a change here needs
 * `npm run config:validator`, and test/config-validate.test.ts fails until it is run.
 */
import { Type, type Static } from '@sinclair/typebox';
import { ACK_SIGNATURE_MODES, KEY_PREFIX_PATTERN } from './config-constants';

export { ACK_SIGNATURE_MODES, ackSignatureMode, KEY_PREFIX_PATTERN, type AckSignatures } from './config-constants';

const AckSignaturesSchema = Type.Union(ACK_SIGNATURE_MODES.map((m) => Type.Literal(m)));

/**
 * Not `constructor`, the one such name an object inherits: code reads per-region fields of plain objects (a
 * Redis hash's reply, a row's deliveries), where it would find Object's function for a region never written.
 */
const RegionId = Type.String({ pattern: '^(?!constructor$)[a-z][a-z0-9-]{0,62}$' });

export const RegionSchema = Type.Object(
  {
    id: RegionId,
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    databaseUrl: Type.String({ pattern: '^postgres(ql)?://' }),
    /** Address the region listens on and is reached at (default 127.0.0.1). */
    host: Type.Optional(Type.String({ minLength: 1 })),
    /** Base URL other tools use to reach the region (default http://host:port). */
    publicUrl: Type.Optional(Type.String({ pattern: '^https?://' })),
    /** The region's own Redis (its inbox stream, its changes' acks); default: the top-level redisUrl. */
    redisUrl: Type.Optional(Type.String({ pattern: '^rediss?://' })),
    /**
     * The operator port: /healthz, /readyz and /admin/replication served by a thread of their own, so that they
     * answer while the region's port is flooded (src/operator/listener.ts). Same host as `port`. Default: none.
     */
    operatorPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  },
  { additionalProperties: false },
);

/** One admission gate (src/http/admission.ts); fields left out take the defaults there. */
const GateSchema = Type.Object(
  {
    /** Requests in their database phase at once. */
    concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    /** Requests waiting for a slot; beyond it they are answered 503 at once. */
    queue: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
    /** Longest wait for a slot (ms); then 503. */
    queueWaitMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 120_000 })),
  },
  { additionalProperties: false },
);

export const ConfigFileSchema = Type.Object(
  {
    redisUrl: Type.String({ pattern: '^rediss?://' }),
    redisKeyPrefix: Type.String({ pattern: KEY_PREFIX_PATTERN }),
    regions: Type.Array(RegionSchema, { minItems: 1, maxItems: 32 }),
    /** host:port pairs whose IdP metadata may be fetched over http and at private addresses. */
    metadataAllowedHosts: Type.Optional(Type.Array(Type.String({ pattern: '^[^\\s/]+:[0-9]{1,5}$' }))),
    /** How often each region re-fetches the IdP metadata of the credentials it created (and of those it adopted from a removed region). */
    metadataRefreshIntervalSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
    /**
     * How long the deployment's members must stay unchanged before the remaining regions adopt the credentials
     * of a region removed from it, refreshing their IdP metadata (seconds, default 600; src/replication/departures.ts).
     */
    adoptAfterSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
    /** Live SAML provider credentials an organization may hold (counted in the region that takes the create; default 100). */
    maxCredentialsPerOrg: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    /**
     * IdP metadata fetches in flight at once, per organization (default 4) and per region (default 16); a request
     * beyond its organization's bound waits up to waitMs (default 5000) for a slot; then a 429, beyond the region's a 503.
     */
    metadataFetchConcurrency: Type.Optional(
      Type.Object(
        {
          perOrg: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
          perRegion: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** How far ahead of a region's clock a replicated version may be; further ahead, the event is parked. */
    maxClockSkewMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
    /** Clock skew tolerated on SAML NotBefore / NotOnOrAfter (seconds, default 60). */
    samlClockSkewSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 600 })),
    /** Cap of the change stream (entries, XADD MAXLEN ~); a region further behind needs a re-seed. */
    streamMaxLength: Type.Optional(Type.Integer({ minimum: 100 })),
    /** How often each region's relay trims the inboxes it delivers to below what their regions acknowledged (ms, default 30000). */
    streamTrimIntervalMs: Type.Optional(Type.Integer({ minimum: 500, maximum: 600_000 })),
    /**
     * Whether an origin may deliver several events in one inbox entry (a pack; default true). An applier of a
     * version whose config has no such key dead-letters a pack (and its region then needs a re-seed): set
     * false while such a version still runs anywhere, true once every region runs this one (docs/operations.md,
     * "Upgrading to packs").
     */
    replicationPacks: Type.Optional(Type.Boolean()),
    /**
     * Ack signatures (src/replication/ack-auth.ts; docs/operations.md, "Signing acks"): `off` writes acks
     * unsigned (default, what every version before signing writes), `sign` writes them signed with the
     * deployment's replication key and still accepts unsigned ones, `require` also ignores acks whose
     * signature does not hold. Roll out `sign` region by region, then `require`.
     */
    ackSignatures: Type.Optional(AckSignaturesSchema),
    /**
     * How long a write transaction may run (ms, default and most 20000; src/replication/horizon.ts). Each
     * region's watermark stays this much and 10 s more behind its clock, so a shorter bound also lets
     * tombstones be collected sooner.
     */
    writeTransactionTimeoutMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 20_000 })),
    /**
     * How long a delivery may stay unconfirmed before its origin looks whether the destination's inbox still
     * holds it, and delivers it again if not (ms, default 10000; src/replication/relay.ts).
     */
    republishAfterMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 3_600_000 })),
    /**
     * How often each region's applier takes back the inbox entries left pending past their 15 s idle bound: a
     * failed apply's, to try it again, and a stopped process's, to take them over (ms, default 5000).
     */
    claimIntervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })),
    /** How long an ack record lives in Redis when its change is never confirmed (seconds). */
    ackTtlSeconds: Type.Optional(Type.Integer({ minimum: 60 })),
    /**
     * Collection of tombstones no change can reach any more (src/replication/tombstones.ts): on/off, how often
     * each region reports its watermark and collects (ms), how much older than the replication horizon a
     * tombstone must be (ms), and tombstones deleted per transaction. Defaults: true, 60000, 3600000, 500.
     * intervalMs is at most 300000: a confirmed outbox row holds its region's watermark for 6 intervals
     * and must still be there (it is kept 1 h).
     */
    tombstoneCollection: Type.Optional(
      Type.Object(
        {
          enabled: Type.Optional(Type.Boolean()),
          intervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 300_000 })),
          minAgeMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 86_400_000 })),
          batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** Admission control of the API routes: bounds of requests in flight and queued, per kind (README, Configuration). */
    admission: Type.Optional(
      Type.Object(
        {
          writes: Type.Optional(GateSchema),
          reads: Type.Optional(GateSchema),
          /** Requests of both kinds in their database phase at once (each kind also within its concurrency). */
          databaseSlots: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
          /** Retry-After of a 503 (seconds). */
          retryAfterSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type RegionConfig = Static<typeof RegionSchema>;
export type ConfigFile = Static<typeof ConfigFileSchema>;
