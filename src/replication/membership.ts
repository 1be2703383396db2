/**
 * Deployment-wide membership: the regions every process counts for all_regions waits, outbox confirmation
 * (and so deletion) and deliveries, instead of the region list of its own config file. While a region is
 * being added, the other regions still run the old config; they learn of the new one from here.
 *
 * Where it lives: every region's Redis holds a copy of the record, a hash `<prefix>{repl}:members`:
 * region -> JSON {state, joined_at, redis_url}, plus the field `~generation` (bumped on every change,
 * announced on `<prefix>{repl}:members-changed`). A process reads only its own region's copy, united with
 * its configured regions, so it never needs another region's Redis to know the members. Each region is
 * the author of its own entry: it writes it into every region's Redis when it joins, and its processes
 * copy it again (every few seconds) into any Redis whose copy is missing or differs (a Redis that was down,
 * or restarted empty). `redis_url` is where the region's Redis is (without credentials: those of the
 * default `redisUrl` are used), for regions whose config does not name it (a region added to a running
 * deployment).
 * - state: `joining` (it joined a running deployment and has not been seeded yet) or `active`.
 * With config `ackSignatures` `sign` or `require` each entry is signed, bound to its region, with a revision
 * `rev` (ack-auth.ts, signMember): written signed, copied as stored, and counted when it does not verify.
 * In `require` an entry that does not verify still names a member, and nothing else of it is used: its
 * `redis_url` is never learnt, it is never active (countsByNameOnly), and a region writes its own entry over
 * one (docs/membership-signing.md §3); likewise a signed entry older than one the process took (a replay, §2.4).
 * The members a process uses are the record's regions united with its configured regions: membership never
 * shrinks below the config, and a config difference never removes a region. A region leaves only by the
 * explicit admin command (`npm run members -- remove <region>`), which records the removal and removes it from
 * every Redis; an entry gone from this region's copy without a removal was lost, and is written back
 * (MemberRemovals.keepUnremoved).
 * Each process caches the members, re-reads them every second and on an announcement, and keeps the last
 * known members while its Redis is down (local_region writes never wait for this). The relay re-reads them
 * fresh before it confirms. A change of the members is told to `onChange` (the tracker: the all_regions waits
 * under way stop waiting for a removed region).
 */
import type { Logger } from '../logger';
import type { Redis, ReplicationKeys } from '../redis';
import { eachRegion, withoutCredentials, type RedisLinks } from './links';
import { memberSigningKid, type AckSigning } from './ack-auth';
import { copyMember, countsByNameOnly, older, parseMember, readMembers, replaceMember, replaceRaw, writeMember, writeRaw, type Member, type MemberEntry, type MemberState, type MemberWriter } from './member-record';
import { MemberRemovals } from './member-removals';
import { readKnown, writtenKnown } from './removal-auth';
import { groupInfo, streamBounds } from './stream';


export interface MembershipDeps {
  /** The process's Redis connections: its own region's record is read, every region's is written. */
  links: RedisLinks;
  /** The process's subscriber connection (shared with the tracker; messages are told apart by channel). */
  subscriber: Redis;
  keys: ReplicationKeys;
  region: string;
  /** The regions of this process's config file. */
  configured: readonly string[];
  /** This region's Redis, recorded in its entry for the regions whose config does not name it. */
  ownRedisUrl: string;
  log: Logger;
  refreshMs?: number;
  /** How often this region's entry is copied into the other regions' Redis where it is missing or differs. */
  propagateMs?: number;
  /** Config `ackSignatures` (the tracker's): how entries are written, and the count of those read that do not verify. */
  signing?: AckSigning | null;
  /** Told the members' regions when they change (the tracker's waits stop waiting for a removed region). */
  onChange?: (regions: readonly string[]) => void;
}

export class Membership {
  private known = new Map<string, Member>();
  private timer: NodeJS.Timeout | null = null;
  private joined = false;
  private lastPropagated = 0;
  /** The propagation under way: a caller meanwhile waits for it rather than starting another. */
  private propagating: Promise<void> | null = null;
  generation = 0;
  /** When this process last read the record from its Redis (ms since the epoch; 0: never). */
  readAt = 0;
  /** The removals this process knows: read from keys.departed, never forgotten; propagate copies them. */
  private readonly removals: MemberRemovals;
  /** Per member, the removals its processes know (keys.departedKnown), as last read. */
  departedKnown = new Map<string, string[]>();
  /** Reads started, and the latest whose result was kept (a slower, older read does not overwrite a newer one). */
  private reads = 0;
  private kept = 0;
  /** refreshAfterAnnouncement: whether its refresh runs, and whether an announcement came since it started. */
  private announcedRefreshing = false;
  private announcedSince = false;

  constructor(private readonly d: MembershipDeps) {
    this.known = this.union(new Map());
    this.removals = new MemberRemovals({ links: d.links, keys: d.keys, region: d.region, log: d.log, signing: d.signing });
  }

  /** How this process writes entries (signed in `sign` and `require` modes). */
  private get writer(): MemberWriter {
    return { log: this.d.log, signing: this.d.signing };
  }

  /** The key entries are checked with when this process signs (null: `off`, nothing checked). */
  private get checking() {
    return this.d.signing?.signs ? this.d.signing.auth : null;
  }

  /**
   * Per member, the newest signed entry this process took from its own Redis's copy (by `joined_at`, then `rev`):
   * what a rewrite goes above, what `require` repairs this region's own entry to, and under `require` the mark a
   * replay falls below (see replayed). Kept after a member is removed: its old entry written back is a replay too.
   */
  private readonly newest = new Map<string, Member>();

  /**
   * The highest `rev` of `region`'s entry this process took signed, among `copies` too (signed ones only: a
   * planted `rev` does not steer it): what a rewrite of the entry goes above.
   */
  private revOf(region: string, copies: readonly (Member | undefined)[] = []): number {
    const signed = copies.filter((m) => m?.verified === 'signed').map((m) => m?.rev ?? 0);
    return Math.max(this.newest.get(region)?.rev ?? 0, ...signed);
  }

  /**
   * Under `require`, whether `m` verifies but is older than the entry of its region this process took: a
   * genuine entry saved and written back (say the `active` one from before a restore-check or a relay marked
   * the region joining; docs/membership-signing.md §2.4). A later `joined_at` is a new registration (added
   * again, its Redis lost the record, written afresh over one that did not verify), whatever its `rev`.
   * A process started after the replay has no mark yet and takes it (step 4b, not built).
   */
  private replayed(m: Member): boolean {
    const top = this.newest.get(m.region);
    return !!this.d.signing?.requires && m.verified === 'signed' && top !== undefined && older(m, top);
  }

  /**
   * `m`, as read in this region's copy, as this process takes it: a replay stands for the entry it took before,
   * marked `replayed` (so held, its address unused; a copier puts back the newer one); any other signed entry
   * is the newest now.
   */
  private take(m: Member): Member {
    if (m.verified !== 'signed') return m;
    const top = this.newest.get(m.region);
    if (top && this.replayed(m)) return { ...top, verified: 'replayed' };
    if (!top || !older(m, top)) this.newest.set(m.region, m);
    return m;
  }

  /**
   * Whether `m`'s fields count here beyond its name: in `require` only a verified entry's (a planted `redis_url`
   * would get this process's connection, with the default Redis's credentials, and every change delivered;
   * docs/membership-signing.md §3). An address learnt from a verified entry before is kept (links.learn never
   * forgets), else the region is reached at the default `redisUrl`.
   */
  private trusted(m: Member): boolean {
    return !countsByNameOnly(m, this.d.signing) && !this.replayed(m);
  }

  /** Whether `region` is configured here or this process has read its entry signed: a member it has reason to think genuine. */
  knownGenuine(region: string): boolean {
    return this.d.configured.includes(region) || this.newest.has(region);
  }

  /** Region ids of the members (configured regions first, in config order; then the others, sorted). */
  regions(): string[] {
    return [...this.known.keys()];
  }

  members(): Member[] {
    return [...this.known.values()];
  }

  /** Whether this process has joined (join(): its own Redis holds the members it and its peers know). */
  get hasJoined(): boolean {
    return this.joined;
  }

  /** The regions recorded as removed, sorted; members among them too (a region added again under its name). */
  get departed(): string[] {
    return this.removals.regions;
  }

  private union(stored: Map<string, Member>): Map<string, Member> {
    const out = new Map<string, Member>();
    for (const r of this.d.configured) out.set(r, stored.get(r) ?? { region: r, state: 'active', joinedAt: null, redisUrl: null, registered: false, reseed: null, rev: null, raw: null, verified: null });
    for (const r of [...stored.keys()].sort()) if (!out.has(r)) out.set(r, stored.get(r) as Member);
    for (const [r, m] of out) if (!this.trusted(m)) out.set(r, { ...m, unverified: true });
    return out;
  }

  /** Reads this region's copy of the record now; on a Redis error keeps (and returns) the last known members. */
  async refresh(): Promise<Member[]> {
    const { links, keys, region } = this.d;
    const read = ++this.reads;
    try {
      const [{ members, generation }, departedAt, known] = await Promise.all([
        readMembers(links.own, keys, this.checking),
        links.own.hgetall(keys.departed),
        links.own.hgetall(keys.departedKnown),
      ]);
      // This Redis lost the record (restarted empty): register again, in the state last known (a region
      // marked joining stays so until it is re-seeded: tombstone collection waits for it, horizon.ts), and
      // put back every member this process knew from it. A region added at runtime is in no config here:
      // without this it would drop out of this region's members until its own processes copy it back, and
      // meanwhile the relay could confirm changes it never received.
      if (this.joined && !members.has(region)) {
        for (const m of this.known.values()) {
          if (m.region === region || !m.registered) continue;
          await copyMember(links.own, keys, m, this.writer);
        }
        // In the state it had; under require one it held as not verifying: the newest it took, else joining.
        const last = this.known.get(region);
        const state = last?.unverified ? (this.newest.get(region)?.state ?? 'joining') : (last?.state ?? 'active');
        await writeMember(links.own, keys, region, this.entry(state, this.revOf(region) + 1), true, this.writer);
        // And the removals it knew: never deleted, so a Redis without them lost them.
        await this.removals.copyTo(links.own);
        return this.refresh();
      }
      if (read > this.kept) {
        if (await this.markLost(members.get(region), generation)) return this.refresh();
        this.kept = read;
        const taken = new Map<string, Member>();
        for (const stored of members.values()) {
          const m = this.take(stored);
          taken.set(m.region, m);
          if (this.trusted(m)) links.learn(m.region, m.redisUrl);
          if (stored.raw !== null && m.verified !== null) this.d.signing?.member(m.region, stored.raw, m.verified);
        }
        this.generation = generation;
        this.removals.take(departedAt);
        // Writes that fail (a Redis that serves reads and refuses writes: out of memory, a read-only replica) do
        // not stop the read from taking effect: they are tried again on the next refresh.
        await this.removals.sign(departedAt, this.joined, (r) => taken.get(r) ?? this.newest.get(r)).catch((err: Error) => this.d.log.debug({ err: err.message }, 'could not sign the removal records; will retry'));
        await this.removals.keepUnremoved(taken, { newest: this.newest, known: this.known, joined: this.joined, writer: this.writer });
        const before = this.regions();
        this.known = this.union(taken);
        const now = this.regions();
        if (now.length !== before.length || now.some((r, i) => r !== before[i])) this.d.onChange?.(now);
        this.departedKnown = new Map(Object.entries(known).flatMap(([r, raw]): [string, string[]][] => {
          const list = readKnown(this.d.signing, r, raw, true);
          return list ? [[r, list]] : [];
        }));
        this.readAt = Date.now();
        // This region's processes say which removals they know and take for gone (their own Redis first, signed
        // where entries are; propagate copies it): not a region this process still counts as a member (its
        // config names it).
        const list = this.departed.filter((r) => !this.known.has(r));
        const mine = writtenKnown(this.d.signing, region, list);
        if (this.joined && known[region] !== mine) {
          await links.own.hset(keys.departedKnown, region, mine);
          this.departedKnown.set(region, list);
        }
      }
    } catch (err) {
      this.d.log.debug({ err: (err as Error).message }, 'membership refresh failed; using the last known members');
    }
    if (this.joined && Date.now() - this.lastPropagated >= (this.d.propagateMs ?? 5000)) void this.propagate();
    return this.members();
  }

  /**
   * Whether this region's own Redis went back past a `joining` mark of its entry (a failover to a replica that
   * lacked it, a restart from an older AOF/RDB), and the mark was written back. Every write to the record bumps
   * its generation, so a record whose entry of this region changed while its generation did not pass the one
   * this process last read lost writes; an `active` entry where this process last took `joining` is then the
   * one from before the mark, not an activation (a re-seed's or an operator's, which bump it). Left, propagate
   * would copy it over the peers' marks, and tombstones the region lacks could be collected. The mark is put
   * back as stored, only if the field still holds `now`. Under require the older entry is a replay (`rev`).
   * A process that did not take the mark before the Redis went back cannot tell (docs/replication.md).
   */
  private async markLost(now: Member | undefined, generation: number): Promise<boolean> {
    const last = this.known.get(this.d.region);
    if (!this.joined || this.d.signing?.requires || !now?.raw || !last?.raw || generation > this.generation) return false;
    if (last.state !== 'joining' || now.state !== 'active' || now.raw === last.raw) return false;
    const { links, keys, region, log } = this.d;
    if (!(await replaceRaw(links.own, keys, region, now.raw, last.raw, log))) return false;
    log.warn({ generation, last_read_generation: this.generation }, "this region's Redis went back to its membership entry from before a joining mark (it lost writes: a failover, an older snapshot): the mark is written back; re-seed this region (npm run reseed)");
    return true;
  }

  private entry(state: MemberState, rev: number): MemberEntry {
    return { state, redis_url: withoutCredentials(this.d.ownRedisUrl), rev };
  }

  /** The other members whose Redis is not this region's own. */
  private peers(): string[] {
    return this.regions().filter((r) => r !== this.d.region && !this.d.links.sharesOwn(r));
  }

  /**
   * Copies this region's entry, as its own Redis holds it, into every other region's Redis where it is
   * missing or differs, with the removals it knows (see below). A Redis that is down is tried again next time.
   */
  propagate(): Promise<void> {
    this.propagating ??= this.propagateNow().finally(() => {
      this.propagating = null;
    });
    return this.propagating;
  }

  private async propagateNow(): Promise<void> {
    this.lastPropagated = Date.now();
    const { links, keys, region } = this.d;
    try {
      const mine = await this.repairedOwn(await links.own.hget(keys.members, region));
      if (mine === null) return;
      // The removals this region knows as its processes wrote them (under require not one that does not verify:
      // its processes write it again within a second).
      const stored = await links.own.hget(keys.departedKnown, region);
      const known = stored !== null && readKnown(this.d.signing, region, stored) !== null ? stored : null;
      // One set of removals for every peer of this round.
      const removals = this.removals.records;
      await eachRegion(this.peers(), async (peer) => {
        const to = links.to(peer);
        if ((await to.hget(keys.members, region)) !== mine) await writeRaw(to, keys, region, mine, false, this.writer);
        // The removals this region knows, and the record of each where it is missing (a Redis the removal did
        // not reach, one restarted empty, a region added since): every member learns of every removal.
        if (known !== null && (await to.hget(keys.departedKnown, region)) !== known) await to.hset(keys.departedKnown, region, known);
        await this.removals.copyTo(to, removals);
      });
    } catch (err) {
      this.d.log.debug({ err: (err as Error).message }, 'membership propagation failed; will retry');
    }
  }

  /**
   * `raw`, this region's entry in its own Redis, as propagate copies it. In `sign` and `require` modes an entry
   * that does not verify (written by a version before signing, by a process still `off`, or by anything else that
   * writes to this Redis), or that names another Redis, is written again, signed, with this region's own Redis:
   * in `sign` with the state it says (trust on upgrade, as `sign` takes unsigned acks; it was counted when read),
   * what turns a deployment's unsigned entries into signed ones; in `require` with the newest entry this process
   * took verified, else joining; likewise in `require` over a replay of an older one of its entries (see
   * replayed). Only if the field still holds `raw` (a re-seed or a relay
   * marking it joining meanwhile wins); then it is read again.
   */
  private async repairedOwn(raw: string | null): Promise<string | null> {
    const auth = this.checking;
    if (raw === null || !auth) return raw;
    const { links, keys, region, log } = this.d;
    const m = parseMember(region, raw, auth);
    const url = withoutCredentials(this.d.ownRedisUrl);
    const replayed = this.replayed(m);
    // Signed with a key that is no longer the one this region signs with (a rotation's second step): signed
    // again with the new one, as it stands (it verified), so that dropping the old key leaves it verifying.
    if (m.verified === 'signed' && !replayed && m.redisUrl === url && memberSigningKid(raw) === auth.signingKid) return raw;
    // Under require nothing of an entry that does not verify, or is replayed, is taken: the newest one this
    // process took, else joining (only an operator or a re-seed makes it active again).
    const base = countsByNameOnly(m, this.d.signing) || replayed ? this.newest.get(region) : m;
    const entry = { state: base?.state ?? 'joining', joined_at: base?.joinedAt ?? undefined, redis_url: url, reseed: base?.reseed ?? undefined, rev: this.revOf(region, [m]) + 1 };
    if (await replaceMember(links.own, keys, region, raw, entry, this.writer)) {
      const fields = { verdict: replayed ? 'replayed' : m.verified, recorded_redis: m.redisUrl, signed_with: memberSigningKid(raw) };
      // A state undone is an operator's concern: an older version's `members activate` or re-seed writes
      // unsigned, and under require its `active` does not stand.
      if (entry.state !== m.state) log.warn({ ...fields, state: entry.state, written_state: m.state }, `this region's membership entry did not verify or was replayed: written again, signed, ${entry.state} (it said ${m.state}; under require only a signed write, by this version's tools, changes it)`);
      else log.info(fields, "this region's membership entry did not verify, was replayed, named another Redis or was signed with an older key: written again, signed");
    }
    return links.own.hget(keys.members, region);
  }

  /**
   * Registers this region, in its own Redis and every other reachable region's. It joins a running
   * deployment (other members registered, another region's inbox has received changes, and no consumer
   * group of its own yet: no region has been delivering to it) as `joining`: the changes confirmed before
   * the other regions learnt of it reach it by the re-seed (npm run reseed), the rest by its inbox.
   * Otherwise (first start of a deployment, restart) it registers as active if it was not registered.
   */
  async join(): Promise<void> {
    const { links, keys, region, log } = this.d;
    const { members } = await readMembers(links.own, keys, this.checking);
    // Every copy of each entry this region's own copy lacks: the one in the member's own Redis is its
    // authoritative copy (its processes write there first and copy from there); the others may lag.
    const copies = new Map<string, { own?: Member; others: Member[] }>();
    /** This region's entry in the peers' Redis (whether or not its own copy has it). */
    const mineElsewhere: Member[] = [];
    const peers = await eachRegion(this.regions().filter((r) => r !== region), async (peer) => {
      await links.ready(peer);
      const { members: theirs } = await readMembers(links.to(peer), keys, this.checking);
      const theirsOfMine = theirs.get(region);
      if (theirsOfMine) mineElsewhere.push(theirsOfMine);
      for (const [r, m] of theirs) {
        if (members.has(r)) continue;
        const c = copies.get(r) ?? { others: [] };
        copies.set(r, c);
        if (r === peer) c.own = m;
        else c.others.push(m);
      }
      return (await streamBounds(links.to(peer), keys.inbox(peer)))?.lastGeneratedId ?? '0-0';
    });
    // Without the member's own copy, a copy that says joining wins (it needs a re-seed until its own
    // processes say otherwise; tombstone collection waits for it meanwhile). Under require a copy that
    // verifies first; one that does not is copied as stored (it stays unverified), never for this region.
    const seen = new Map(members);
    const ok = (x: Member | undefined): x is Member => x !== undefined && this.trusted(x);
    for (const [r, c] of copies) {
      const m = [c.own].find(ok) ?? c.others.find((x) => ok(x) && x.state === 'joining') ?? [c.own, ...c.others].find(ok) ?? (r === region ? undefined : c.own ?? c.others[0]);
      if (m) seen.set(r, m);
    }
    const hasGroup = await groupInfo(links.own, keys.inbox(region)).then(
      (groups) => groups.some((g) => g.name === region),
      (err: Error) => {
        if (/no such key/i.test(err.message)) return false;
        throw err;
      },
    );
    const running = [...peers.values()].some((p) => p.ok && p.value !== '0-0');
    const others = [...seen.keys()].some((r) => r !== region);
    // Under require an entry of its own that does not verify (planted before it registered, or altered) is
    // written over: left alone, propagate would copy it everywhere as this region's. With the state of the
    // newest copy of it in a peer's Redis that verifies (what the region last wrote), else joining.
    const mine = members.get(region);
    const overwrite = mine !== undefined && countsByNameOnly(mine, this.d.signing);
    const vouched = overwrite ? mineElsewhere.filter(ok).reduce<Member | undefined>((top, m) => (top && !older(top, m) ? top : m), undefined) : undefined;
    // New to a running deployment, or marked joining in some region's copy (it still needs its re-seed).
    const joining = overwrite ? vouched?.state !== 'active' : (!seen.has(region) && !hasGroup && others && running) || seen.get(region)?.state === 'joining';
    // Every member's Redis: its own copy first (the one this region's processes read and copy from).
    // Above any revision of its entry it knows, a peer's copy included (a registration again after its Redis lost it).
    const ownCopies = copies.get(region);
    const rev = this.revOf(region, [members.get(region), ownCopies?.own, ...(ownCopies?.others ?? []), ...mineElsewhere]) + 1;
    await writeMember(links.own, keys, region, this.entry(joining ? 'joining' : 'active', rev), !overwrite, this.writer);
    if (overwrite && joining) log.warn({ verdict: mine.verified, recorded_redis: mine.redisUrl }, "this region's membership entry did not verify: written over, joining (re-seed it, or npm run members -- activate)");
    else if (overwrite) log.warn({ verdict: mine.verified, recorded_redis: mine.redisUrl }, "this region's membership entry did not verify: written over, active, as a peer's Redis holds it signed");
    // Its own copy lacks the region itself: new, or this Redis lost its data (an applier that met NOGROUP
    // joins again). Every other member found in a peer's copy or known to this process goes back in too,
    // as refresh() does: a region added at runtime is in no config here, and once this region's own entry
    // is back, nothing else would restore it (until its own processes copy it over, which they cannot while
    // it is down); meanwhile no change would be delivered to it and the relay would confirm them without it.
    if (!members.has(region)) {
      const others = new Map([...this.known].filter(([, m]) => m.registered));
      for (const [r, m] of seen) others.set(r, m);
      for (const m of others.values()) {
        if (m.region === region || members.has(m.region)) continue;
        await copyMember(links.own, keys, m, this.writer);
      }
    }
    if (joining) log.warn('joined a running deployment: re-seed this region from a peer (npm run reseed), see docs/operations.md, "Adding a region"');
    this.joined = true;
    for (const [r, m] of seen) if (this.trusted(m)) links.learn(r, m.redisUrl);
    await this.refresh();
    await this.propagate();
  }

  /**
   * On an announcement: a refresh that starts after it. Announcements are coalesced (anyone who can publish
   * on the channel could flood it): one refresh at a time, and at most one more after it for all those
   * heard meanwhile.
   */
  private refreshAfterAnnouncement(): void {
    this.announcedSince = true;
    if (this.announcedRefreshing) return;
    this.announcedRefreshing = true;
    void (async () => {
      try {
        while (this.announcedSince) {
          this.announcedSince = false;
          await this.refresh();
        }
      } finally {
        this.announcedRefreshing = false;
      }
    })();
  }

  /** Refreshes every `refreshMs` and on announcements (coalesced). */
  start(): void {
    const { subscriber, keys } = this.d;
    subscriber.on('message', (channel: string) => {
      if (channel === keys.membersChannel) this.refreshAfterAnnouncement();
    });
    const subscribe = () => void subscriber.subscribe(keys.membersChannel).catch(() => undefined);
    subscriber.on('ready', subscribe);
    if (subscriber.status === 'ready') subscribe();
    const tick = () => {
      void this.refresh().finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.d.refreshMs ?? 1000).unref();
      });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
