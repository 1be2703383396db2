/**
 * One change's progress as the tracker and this region's outbox (with its deliveries' acks) know it: per
 * region applied (holds it), superseded (lost to a state that outranks it) or pending. Served to operators
 * (/admin) and to the change's own organization (the dialects' org-scoped routes).
 */
import type { Db } from '../db/client';
import { versionTime } from './hlc';
import type { RedisLinks } from './links';
import type { ReplicatedTable } from './tables';
import type { Tracker } from './tracker';
import { acksOf, counts, ORG_FIELD, orgOf, PARKED_PREFIX, parseAck, type Ack, type AckWinner } from './ack-records';

type Superseded = { region: string; at: string; winner: AckWinner };

export interface ChangeStatus {
  change_id: string;
  /**
   * complete: every region holds the change; superseded: it lost somewhere (so everywhere); pending: neither
   * yet; discarded: every region that does not hold it discarded it (it never will).
   */
  state: 'complete' | 'superseded' | 'pending' | 'discarded';
  complete: boolean;
  /** Per region: when it applied the change and held it, or null. */
  applied_at: Record<string, string | null>;
  pending_regions: string[];
  /**
   * Of the pending regions, those that parked the change (they could not apply it): it waits there for an
   * upgrade or an operator (docs/operations.md, "Parked events"), not for delivery.
   */
  parked_regions: string[];
  /**
   * Regions where an operator discarded the parked change: it is not applied there, and no longer pending.
   * Only the discarding region records a discard, so only its own status lists it (elsewhere it reads parked).
   */
  discarded_regions: string[];
  superseded: Superseded[];
  /**
   * Set when the change lost only its Idempotency-Key's record (the same key sent at once to another region,
   * whose write came first): what it wrote is kept, and counted applied above; a retry with the key answers
   * the other write. Null otherwise.
   */
  idempotency_key: { state: 'superseded'; superseded: Superseded[]; message: string } | null;
  tracker_available: boolean;
  /** Present when this region is the change's origin. */
  origin: { region: string; committed_at: string | null; published_at: string | null; confirmed_at: string | null } | null;
}

export interface ChangeStatusDeps {
  db: Db;
  tracker: Tracker;
  region: string;
  regions: readonly string[];
  /** The other regions' Redis, where a change originated elsewhere keeps its acks (a Redis per region). */
  links?: RedisLinks;
  /** The replicated tables: those that record a write (recordsWrite) tell a lost key from a lost change. */
  tables?: readonly ReplicatedTable[];
}

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

/**
 * A change this region did not originate keeps its acks in its origin's Redis (the appliers record them
 * there), which is this region's own only when they share one. The id does not name the origin, so every
 * other Redis of the deployment is asked once (a connection per distinct Redis, each bounded by the peer
 * command timeout); the first record found is the change's. Null when none has it or none answers.
 */
async function elsewhere(d: ChangeStatusDeps, changeId: string): Promise<Record<string, string> | null> {
  const { links } = d;
  if (!links) return null;
  const peers = new Set(d.regions.map((r) => links.to(r)));
  peers.delete(links.own);
  const found = await Promise.all([...peers].map((redis) => d.tracker.status(changeId, redis).catch(() => null)));
  return found.find((h) => h && Object.keys(h).length > 0) ?? null;
}

/**
 * The status of `changeId`, or null when neither the tracker nor this region's outbox knows it. With
 * `orgId`, only a change known to belong to that organization is shown (the origin's outbox row or the
 * tracker's record names it), or, given a test of the change's organization instead, one it passes (an
 * Infisical token's organization may follow its sub-organizations' changes); any other answers null, so
 * a client cannot probe other organizations. Null `orgId`: any change.
 */
export async function changeStatus(
  d: ChangeStatusDeps,
  changeId: string,
  orgId: string | null | ((owner: string) => Promise<boolean>),
): Promise<ChangeStatus | null> {
  const [own, outbox] = await Promise.all([
    d.tracker.status(changeId).catch(() => null),
    d.db.replicationOutbox.findUnique({ where: { changeId } }),
  ]);
  const hash = own && Object.keys(own).length === 0 && !outbox ? ((await elsewhere(d, changeId)) ?? own) : own;
  if ((!hash || Object.keys(hash).length === 0) && !outbox) return null;
  // Its fields count as the tracker's signing says (in `require` mode only those whose signature holds): a
  // planted `~org` must not let an organization read the change, nor a planted ack read as applied.
  const check = { changeId, signing: d.tracker.signing };
  if (orgId !== null) {
    const owner = (outbox?.orgId ?? orgOf(hash, check))?.toLowerCase() ?? null;
    if (owner === null || !(typeof orgId === 'string' ? owner === orgId : await orgId(owner))) return null;
  }
  const acks = acksOf(hash ?? {}, check);
  // The origin keeps each confirmed delivery's ack (relay.ts; a redelivery clears it): what its Redis lost, or
  // let expire, is read there (an ack that is no outcome, "parked", reads as pending). The origin itself
  // committed the change. (Elsewhere only the origin's Redis can tell.)
  const parked = new Set(Object.entries(hash ?? {}).filter(([field, value]) => field !== ORG_FIELD && value.startsWith(PARKED_PREFIX) && counts(check, field, value)).map(([field]) => field));
  if (outbox) {
    if (!acks.has(d.region)) acks.set(d.region, { outcome: 'applied', at: outbox.createdAt.toISOString() });
    const kept = await d.db.replicationDelivery.findMany({ where: { changeId, ack: { not: null } }, select: { region: true, ack: true } });
    for (const k of kept) {
      const ack = !acks.has(k.region) && k.ack ? parseAck(k.ack) : null;
      if (ack) acks.set(k.region, ack);
      else if (k.ack?.startsWith(PARKED_PREFIX)) parked.add(k.region);
    }
  }
  const keyLost = keptButKeyLost(acks, d.regions, d.tables ?? []);
  const applied_at: Record<string, string | null> = {};
  const superseded: ChangeStatus['superseded'] = [];
  for (const r of d.regions) {
    const a = acks.get(r);
    applied_at[r] = a?.outcome === 'applied' ? a.at : null;
    if (a?.outcome === 'superseded' && a.winner) superseded.push({ region: r, at: a.at, winner: a.winner });
  }
  const waiting = d.regions.filter((r) => !acks.has(r));
  const discarded = waiting.includes(d.region) && (await discardedHere(d.db, changeId)) ? [d.region] : [];
  const pending = waiting.filter((r) => !discarded.includes(r));
  const complete = superseded.length === 0 && waiting.length === 0;
  return {
    change_id: changeId,
    state: superseded.length ? 'superseded' : complete ? 'complete' : pending.length ? 'pending' : 'discarded',
    complete,
    applied_at,
    pending_regions: pending,
    parked_regions: pending.filter((r) => parked.has(r)),
    discarded_regions: discarded,
    superseded,
    idempotency_key: keyLost.length ? { state: 'superseded', superseded: keyLost, message: keyLostMessage(keyLost[0] as Superseded) } : null,
    tracker_available: hash !== null,
    origin: outbox
      ? { region: d.region, committed_at: iso(outbox.createdAt), published_at: iso(outbox.publishedAt), confirmed_at: iso(outbox.confirmedAt) }
      : null,
  };
}

/**
 * Whether an operator discarded the change in this region (POST /admin/replication/parked/discard). The
 * discard is recorded here only: the origin's ack record keeps "parked" for this region (its values are
 * read by every release during a rolling upgrade: an older one would read a new value as no ack at all,
 * neither parked nor applied), so it is read where it is stored. A discarded change applied later acks
 * "applied", and is not asked about.
 */
async function discardedHere(db: Db, changeId: string): Promise<boolean> {
  return (await db.replicationDiscarded.findUnique({ where: { changeId }, select: { changeId: true } })) !== null;
}

/**
 * The regions whose ack says the change lost only the row recording it (ReplicatedTable.recordsWrite, the
 * last row of its change; a region's ack names the first row that lost): every other row held there, so
 * those acks become "applied" in `acks`. Derived from the acks as every version records them, so the ack
 * format (read by every version during a rolling upgrade) is unchanged.
 */
function keptButKeyLost(acks: Map<string, Ack>, regions: readonly string[], tables: readonly ReplicatedTable[]): Superseded[] {
  const records = new Set(tables.filter((t) => t.recordsWrite).map((t) => t.name));
  const lost: Superseded[] = [];
  for (const region of regions) {
    const a = acks.get(region);
    if (a?.outcome !== 'superseded' || !a.winner || !records.has(a.winner.table)) continue;
    lost.push({ region, at: a.at, winner: a.winner });
    acks.set(region, { outcome: 'applied', at: a.at });
  }
  return lost;
}

/** In the resource's terms, as the 409 of a lost write says it: the winner's region and time. */
function keyLostMessage(lost: Superseded): string {
  const when = versionTime(lost.winner.version);
  return (
    `Only this change's Idempotency-Key record was superseded: a write sent with the same key at the same time to ${lost.winner.originRegion}` +
    `${when ? ` (at ${when})` : ''} came first, so a retry with that key answers that write, not this one. ` +
    'What this change wrote was kept (applied_at shows where it is applied); if both writes created a resource, there are two now: delete the one you do not want.'
  );
}
