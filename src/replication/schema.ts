/** Schemas of the replication module's answers (admin status, one change's progress, digests), for the OpenAPI document. */
import { Type, type TSchema } from '@sinclair/typebox';
import { ACK_SIGNATURE_MODES } from '../config-schema';
import { AdmissionStatus } from '../http/admission-schema';
import { compile, Uuid } from '../http/validate';
import { PARK_REASONS } from './parked';

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Time = Type.String({ format: 'date-time' });
const Count = Type.Integer({ minimum: 0 });
const strict = { additionalProperties: false } as const;

/** A region that judged a change (or its key record) lost, and the state that won there. */
const Superseded = Type.Object(
  {
    region: Type.String(),
    at: Time,
    winner: Type.Object({ table: Type.String(), key: Type.String(), version: Type.String(), originRegion: Type.String() }, strict),
  },
  strict,
);

/** One change: per region applied (and held), superseded (and by what), or pending. See change-status.ts. */
export const ChangeStatusSchema = Type.Object(
  {
    change_id: Type.String({ format: 'uuid' }),
    state: Type.Union([Type.Literal('complete'), Type.Literal('superseded'), Type.Literal('pending'), Type.Literal('discarded')]),
    complete: Type.Boolean(),
    applied_at: Type.Record(Type.String(), Nullable(Time), { description: 'Per region: when it applied the change and held it, or null.' }),
    pending_regions: Type.Array(Type.String()),
    parked_regions: Type.Array(Type.String(), {
      description: 'Of the pending regions, those that parked the change (could not apply it): it waits there for an upgrade or an operator, not for delivery.',
    }),
    discarded_regions: Type.Array(Type.String(), {
      description:
        'Regions where an operator discarded the parked change (not applied there, no longer pending). Only the region that discarded it knows: listed in its own answers only.',
    }),
    superseded: Type.Array(Superseded),
    idempotency_key: Nullable(
      Type.Object(
        {
          state: Type.Literal('superseded'),
          superseded: Type.Array(Superseded, { description: 'The regions that judged the key record lost, and to what.' }),
          message: Type.String(),
        },
        {
          ...strict,
          description:
            'Set when the change lost only its Idempotency-Key record (the same key sent at once to another region, whose write came first): ' +
            'what the change wrote is kept and counted in applied_at; a retry with the key answers the other write.',
        },
      ),
    ),
    tracker_available: Type.Boolean(),
    origin: Nullable(
      Type.Object({ region: Type.String(), committed_at: Nullable(Time), published_at: Nullable(Time), confirmed_at: Nullable(Time) }, strict),
    ),
  },
  strict,
);

/**
 * Tombstone collection (docs/replication.md, "Tombstones and their collection"): null when the process runs
 * no collector.
 */
const TombstoneStatus = Type.Object(
  {
    enabled: Type.Boolean(),
    interval_ms: Count,
    min_age_ms: Count,
    computed_at: Nullable(Time),
    horizon: Nullable(Type.String({ description: 'No change at or below this version can still arrive anywhere; null while a member holds it back.' })),
    lowest_region: Nullable(Type.String({ description: 'The member whose watermark is the horizon.' })),
    collect_below: Nullable(Type.String({ description: 'The horizon less min_age_ms: tombstones older than this are collected.' })),
    held_by: Type.Array(
      Type.Object(
        {
          region: Type.String(),
          reason: Type.Union(['joining', 'no-report', 'stale-report', 'no-group', 'needs-reseed', 'unreadable', 'unverified'].map((r) => Type.Literal(r)), {
            description: 'unverified: its report in this Redis does not verify and this region requires signatures (ackSignatures require).',
          }),
        },
        strict,
      ),
      { description: 'Members that keep the horizon from being computed.' },
    ),
    members: Type.Array(
      Type.Object({ region: Type.String(), watermark: Nullable(Type.String()), reported_at: Nullable(Time), age_ms: Nullable(Type.Integer()) }, strict),
    ),
    last_error: Nullable(Type.String()),
    collected_through: Nullable(Type.String({ description: 'The highest cut-off this region collected below (durable).' })),
    last_collected_at: Nullable(Time),
    collected: Type.Object({ total: Count, by_table: Type.Record(Type.String(), Count) }, strict),
    refused_below_horizon: Count,
    parts_swept: Type.Object(
      { tombstoned: Count, deleted_here: Count },
      {
        ...strict,
        description:
          'Parts (SSO settings) that outlived their credential, taken by the collection cycle since this process started: tombstoned by a replicated write (the credential a tombstone here) or deleted here only (the credential absent). tombstoned also counts the changes that tombstoned the rows of a deleted organization (its remainder beyond its delete\'s change, rows written into it concurrently).',
      },
    ),
  },
  strict,
);

/** GET /admin/replication. */
export const ReplicationStatus = Type.Object(
  {
    region: Type.String(),
    regions: Type.Array(Type.String()),
    members: Type.Array(
      Type.Object(
        {
          region: Type.String(),
          state: Type.Union([Type.Literal('joining'), Type.Literal('active')]),
          joined_at: Nullable(Time),
          registered: Type.Boolean({ description: 'False: known only from this region\'s config file.' }),
          verified: Nullable(
            Type.Boolean({
              description:
                "Whether its entry's signature holds (ackSignatures sign/require); null when not checked (off, or not registered). Under require one that does not, or is replayed (older than one this process took), is a member by its name only: waited for and delivered to, never active (horizon hold `unverified`), its Redis address unused.",
            }),
          ),
          verification: Nullable(
            Type.Union(['signed', 'unsigned', 'bad-signature', 'unknown-key', 'replayed'].map((v) => Type.Literal(v)), {
              description:
                "How its entry read (null when not checked, as verified): signed; unsigned (written by a version before signing, or by a writer without the key); bad-signature (a signature that does not hold: altered, or planted); unknown-key (signed with a key this region does not hold: a REPLICATION_KEYS rotation not rolled out here); replayed (require: a signed entry older than one this process took before, written back over it).",
            }),
          ),
        },
        strict,
      ),
      { description: "The deployment's members (the record in this region's Redis and this region's config): all_regions waits, outbox confirmation and deliveries count them." },
    ),
    applied: Type.Array(
      Type.Object(
        {
          origin_region: Type.String(),
          events_applied: Count,
          last_change_id: Nullable(Type.String()),
          last_event_at: Nullable(Time),
          last_applied_at: Nullable(Time),
          lag_ms: Type.Integer(),
        },
        strict,
      ),
    ),
    pending: Type.Array(
      Type.Object(
        {
          region: Type.String(),
          pending_acks: Nullable(Count),
          undelivered: Nullable(Count),
          /** True when `undelivered` is the inbox's length standing in for a count Redis could not make (an entry was deleted past the group's position). */
          undelivered_is_bound: Type.Optional(Nullable(Type.Boolean())),
          last_delivered_id: Nullable(Type.String()),
          needs_reseed: Nullable(Type.Boolean()),
        },
        strict,
      ),
    ),
    stream: Type.Object(
      {
        connected: Type.Boolean(),
        length: Nullable(Count),
        first_id: Nullable(Type.String()),
        dead_letters: Nullable(Count),
        error: Nullable(Type.String()),
      },
      strict,
    ),
    replication_keys: Type.Object(
      {
        signing: Type.String({ description: 'The key id of REPLICATION_KEYS this region signs new events and packs with (its first).' }),
        accepted: Type.Array(Type.String(), { description: 'Every key id of REPLICATION_KEYS this region accepts, in order (the secrets are never shown).' }),
      },
      strict,
    ),
    needs_reseed: Type.Array(Type.String(), { description: 'Regions to re-seed from a peer: their consumer group fell behind the stream cap, or they are members still joining (never re-seeded since they were added, or found with changes trimmed from their inbox unread). Under ackSignatures require not a member whose entry does not verify (whatever state it says; it shows under members with verified false), but a replayed one whose newer entry says joining.' }),
    start_check: Nullable(
      Type.Union([Type.Literal('pending'), Type.Literal('done')], {
        description:
          "Whether this process has checked its region's database at start (restored from a backup, or replaced: then it marked the region joining). " +
          "The region's port opens after the check; pending: its Redis did not answer at start, and it serves unchecked until the check runs. Null when the process runs no applier.",
      }),
    ),
    outbox: Type.Object(
      {
        unpublished: Type.Integer({
          minimum: 0,
          description:
            "Changes committed here whose deliveries to every member are not yet recorded (a write delivered at once counts here for ~0.2 s, until its delivery records are written). " +
            'Disjoint from unconfirmed: their sum is what every member has not yet confirmed, the figure to wait on.',
        }),
        unconfirmed: Type.Integer({ minimum: 0, description: 'Changes recorded as delivered to every member and not yet confirmed by every one (applied or parked, and the ack read).' }),
        oldest_unpublished_at: Nullable(Time),
        unsettled_by_key: Type.Record(Type.String(), Count, {
          description:
            'Per replication key id, the rows above (unpublished and unconfirmed) signed with it when they were written: ' +
            'they may still be delivered with that signature, so a rotation drops a key once every region counts 0 under it.',
        }),
        published_by_relay: Count,
        republished_after_loss: Count,
      },
      strict,
    ),
    failures: Type.Object(
      {
        failing: Count,
        parked: Count,
        parked_by_reason: Type.Record(Type.String(), Count, {
          description:
            'The parked ones per reason (only reasons with any). schema-ahead and unknown-table are held for this region\'s upgrade ' +
            '(expected in the regions not yet upgraded during a rolling upgrade: they apply when it starts on the newer version).',
        }),
        discarded: Count,
        parked_by_origin: Type.Record(Type.String(), Count, {
          description: 'Parked events per region they came from (every parked event, where oldest_parked lists the oldest 20).',
        }),
        oldest_parked: Type.Array(
          Type.Object(
            {
              change_id: Type.String(),
              origin_region: Type.String(),
              stream_id: Nullable(Type.String()),
              tables: Type.Array(Type.String()),
              reason: Type.String(),
              failures: Count,
              error: Type.String(),
              parked_at: Time,
            },
            strict,
          ),
        ),
      },
      strict,
    ),
    // Change entries this process's applier refused for their signature since it started (never applied;
    // dead-lettered). Null when the process runs no applier.
    refused: Nullable(
      Type.Object(
        {
          total: Count,
          by_reason: Type.Object(
            { unsigned: Type.Optional(Count), 'unknown-key': Type.Optional(Count), 'bad-signature': Type.Optional(Count) },
            strict,
          ),
          recent: Type.Array(
            Type.Object(
              {
                stream_id: Type.String(),
                claimed_origin: Nullable(Type.String({ description: 'The origin the entry names; unauthenticated.' })),
                reason: Type.Union([Type.Literal('unsigned'), Type.Literal('unknown-key'), Type.Literal('bad-signature')]),
                kid: Nullable(Type.String()),
                at: Time,
              },
              strict,
            ),
            { description: 'The newest refused entries, newest first.' },
          ),
        },
        strict,
      ),
    ),
    parked_by_applier: Nullable(
      Type.Integer({
        minimum: 0,
        description:
          "Changes this process's applier parked since it started, each once: not one parked before (by this process before a restart, or by another of the region) and delivered again, nor one discarded here. " +
          'failures.parked counts what the region holds parked. Null when the process runs no applier.',
      }),
    ),
    waiting_requests: Count,
    ack_signatures: Type.Object(
      {
        mode: Type.Union(ACK_SIGNATURE_MODES.map((m) => Type.Literal(m)), { description: 'Config ackSignatures.' }),
        unverified: Type.Object(
          { unsigned: Count, 'unknown-key': Count, 'bad-signature': Count },
          { ...strict, description: 'Ack values, announcements and watermark reports this process read that did not verify, by reason, since it started (sign and require modes; off checks none).' },
        ),
        confirmed_on_unverified: Type.Integer({ minimum: 0, description: "Deliveries this process's relay confirmed on an ack value that did not verify (sign mode)." }),
        member_entries: Type.Object(
          {
            unverified: Type.Object(
              { unsigned: Count, 'unknown-key': Count, 'bad-signature': Count, replayed: Count },
              {
                ...strict,
                description:
                  "Entries of this region's copy of the membership record that did not verify, by reason, since this process started (sign and require modes): each stored value once, not once per read. replayed (require): signed, but older than an entry of the same region this process took before (an earlier joined_at, or the same and a lower rev): held as unverified, and the newer entry is kept.",
              },
            ),
          },
          strict,
        ),
        removal_records: Type.Object(
          {
            unverified: Type.Object(
              { unsigned: Count, 'unknown-key': Count, 'bad-signature': Count },
              {
                ...strict,
                description:
                  "Removal records in this region's Redis (departed: when a region was removed; departed-known: the removals a member knows) that did not verify, by reason, since this process started (sign and require modes): each stored value once. Under require such a record counts as absent: nothing is adopted, no owed ack dropped, no member forgotten on it.",
              },
            ),
          },
          strict,
        ),
      },
      { ...strict, description: 'Switch every region to require once unverified, confirmed_on_unverified, member_entries.unverified and removal_records.unverified stop growing in every region (docs/operations.md, "Signing acks").' },
    ),
    tombstones: Nullable(TombstoneStatus),
    admission: Type.Optional(AdmissionStatus),
    snapshot: Type.Optional(
      Type.Object(
        { taken_at: Time, age_ms: Count },
        {
          ...strict,
          description:
            'Only on the operator port: when the main thread published the in-memory figures of this answer (members, outbox.published_by_relay ' +
            'and republished_after_loss, refused, parked_by_applier, waiting_requests, ack_signatures, the tombstone horizon, admission); the rest is read when asked.',
        },
      ),
    ),
  },
  strict,
);

/** POST /admin/replication/parked/retry. */
export const ParkedRetryResult = Type.Object({ region: Type.String(), applied: Count, parked: Count }, strict);

/** The most change ids one discard names. */
export const DISCARD_MAX_IDS = 100;

/** POST /admin/replication/parked/discard: the parked changes to give up on in this region. */
export const ParkedDiscardBody = Type.Object(
  { change_ids: Type.Array(Uuid(), { minItems: 1, maxItems: DISCARD_MAX_IDS, uniqueItems: true }) },
  strict,
);
export const validateParkedDiscard = compile(ParkedDiscardBody);

const ParkReasonSchema = Type.Union(PARK_REASONS.map((r) => Type.Literal(r)));

/** A discarded change as the discard and its read answer it (parked.ts DiscardedEvent). */
const DiscardedFields = {
  change_id: Type.String({ format: 'uuid' }),
  origin_region: Type.String(),
  stream_id: Nullable(Type.String()),
  tables: Type.Array(Type.String()),
  reason: ParkReasonSchema,
  failures: Count,
  error: Type.String(),
  first_failed_at: Time,
  parked_at: Time,
  discarded_at: Time,
};

/** Its answer: what was discarded (each event is kept in this region, see ParkedDiscardedEvent), and the named ids that were not parked here. */
export const ParkedDiscardResult = Type.Object(
  {
    region: Type.String(),
    discarded: Type.Array(Type.Object(DiscardedFields, strict)),
    not_parked: Type.Array(Type.String({ format: 'uuid' }), {
      description: 'Named ids (in lower case) with no parked event here: never parked, applied since, already discarded, or still failing (retried).',
    }),
  },
  strict,
);

/** GET /admin/replication/parked/discarded/{changeId}: one discarded change, with its event. */
export const ParkedDiscardedEvent = Type.Object(
  {
    region: Type.String(),
    ...DiscardedFields,
    event: Type.Object({}, { additionalProperties: true, description: 'The change event as it was parked (its ops hold the rows it writes).' }),
  },
  strict,
);

/** GET /admin/replication/digest: per replicated table, its row count and an md5 of its rows (equal everywhere once caught up). */
export const DigestResult = Type.Object(
  { region: Type.String(), tables: Type.Record(Type.String(), Type.Object({ rows: Count, digest: Type.String() }, strict)) },
  strict,
);
