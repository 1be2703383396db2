/**
 * The work of `npm run members` (scripts/members.ts, where the commands and their output are described), in a
 * module of its own: the command loads it, and with it the config's schema and ioredis, only once its arguments
 * parse, so that `--help` and a usage mistake load none of them (test/cli-help.test.ts).
 */
import { ConfigError, readRegionsConfig, redisUrlOf, regionsConfigPath, withRedisOverrides } from '../src/config';
import type { ConfigFile } from '../src/config-schema';
import type { EventAuth } from '../src/replication/event-auth';
import { createRedis, replicationKeys, type Redis, type ReplicationKeys } from '../src/redis';
import { deploymentRedis, RedisUnreachable, unreachableRedis } from '../src/redis-reach';
import { operatorCommand } from '../src/replication/reseed-command';
import { isConnectionOf } from '../src/replication/connection-names';
import { eachRegion, withCredentialsOf, withoutCredentials } from '../src/replication/links';
import { failureStatus } from './usage';
import { scriptSigning } from './cluster-secrets';
import { older, parseMember, readMembers, removeMember, replaceMember, updateMember, type Member } from '../src/replication/member-record';
import type { AckSigning } from '../src/replication/ack-auth';
import { checkDeparture, departureTime } from '../src/replication/removal-auth';

/** A connection that issued a command this recently (s) is a running process's: each refreshes the members every second. */
const ACTIVE_WITHIN_S = 10;

/**
 * A connection of the region's processes (named `<key prefix><region>:<pid>:…`, src/replication/connection-names.ts) to
 * any of these Redis that issued a command within ACTIVE_WITHIN_S, or null. A process that ended closed its
 * connections; one paused (SIGSTOP) keeps them but issues nothing, so it counts as running only for as long.
 * A Redis that does not answer, or refuses CLIENT LIST (an ACL), tells nothing (the removal names the former).
 */
async function runningConnection(servers: readonly Redis[], prefix: string, region: string): Promise<{ name: string; addr: string; idle: number } | null> {
  const lists = await Promise.all(servers.map((r) => (r.client('LIST') as Promise<string>).catch(() => '')));
  for (const line of lists.join('\n').split('\n')) {
    const f = new Map(line.trim().split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    const name = f.get('name') ?? '';
    const idle = Number(f.get('idle'));
    if (isConnectionOf(name, prefix, region) && idle < ACTIVE_WITHIN_S) return { name, addr: f.get('addr') ?? '?', idle };
  }
  return null;
}

/** `activate` refused: no copy of a region the config does not name verifies (exit 2: nothing to build on). */
class NothingVerifies extends Error {}

/** How many times `activate` reads the copies again when one changed between its read and its write. */
const ACTIVATE_ROUNDS = 3;

/**
 * `activate` where the regions sign (`sign`, `require`): a fresh signed `active` entry, written over each copy
 * of the region's entry (where it is a member; compare-and-set on the copy read, read again when one changed
 * meanwhile), built only on copies that verify, so that nothing a writer without the key planted is signed into
 * the record (docs/membership-signing.md §3.2, §4): `rev` one above the highest `rev` of a copy that verifies;
 * `joined_at` and `redis_url` from the newest copy that verifies (by `joined_at`, then `rev`), else (none verifies)
 * `joined_at` now; for a region the config names, `redis_url` from the config (without credentials) when no copy
 * that verifies records one; the re-seed token
 * cleared, as every activation does. A region the config does not name with no copy that verifies is refused.
 */
async function activateSigned(a: { region: string; file: ConfigFile; configPath: string; keys: ReplicationKeys; signing: AckSigning; servers: Map<string, string[]>; redisOf: (url: string) => Redis }) {
  const { region, file, keys, signing, servers } = a;
  const configured = file.regions.some((r) => r.id === region);
  // The regions of those Redis, in the config's order.
  const regionsOf = (urls: string[]) => [...servers.keys()].filter((url) => urls.includes(url)).flatMap((url) => servers.get(url) ?? []);
  for (let round = 1; ; round++) {
    const read = await eachRegion([...servers.keys()], async (url) => {
      const raw = await a.redisOf(url).hget(keys.members, region);
      return raw === null ? null : parseMember(region, raw, signing.auth);
    });
    // In the config's order (eachRegion's map is in the order the answers came).
    const answers = [...servers.keys()].map((url) => [url, read.get(url) ?? { ok: false as const }] as const);
    const copies = answers.flatMap(([url, r]) => (r.ok && r.value ? [{ url, m: r.value }] : []));
    const unreachable = answers.filter(([, r]) => !r.ok).map(([url]) => url);
    if (copies.length === 0) throw new Error(`${region} is not a member (it registers itself when it starts)${unreachable.length ? `; the Redis of ${regionsOf(unreachable).join(', ')} did not answer` : ''}`);
    const verified = copies.filter(({ m }) => m.verified === 'signed').map(({ m }) => m);
    const notVerified = copies.filter(({ m }) => m.verified !== 'signed').map(({ url }) => url);
    if (verified.length === 0 && !configured) {
      throw new NothingVerifies(
        `${region}'s membership entry does not verify in any Redis that holds it (${regionsOf(notVerified).join(', ')}), and ${a.configPath} does not name it: nothing of it is signed into the record, and nothing was written. A region added at runtime writes its entry again, signed, while it runs (within about 5 s); a name planted in the record is taken out with \`${operatorCommand(a.configPath, 'members', `remove ${region}`)}\`.`,
      );
    }
    const base = verified.reduce<Member | undefined>((top, m) => (top && !older(top, m) ? top : m), undefined);
    const rev = Math.max(0, ...verified.map((m) => m.rev ?? 0)) + 1;
    if (!Number.isSafeInteger(rev)) throw new Error(`${region}'s membership entry verifies at rev ${rev - 1}, above which no safe integer is left: nothing was written (only a holder of the key writes that)`);
    const redisUrl = base?.redisUrl ?? (configured ? withoutCredentials(redisUrlOf(file, region)) : null);
    const entry = { state: 'active' as const, joined_at: base?.joinedAt ?? undefined, redis_url: redisUrl, rev };
    const written = await eachRegion(copies.map(({ url }) => url), async (url) => replaceMember(a.redisOf(url), keys, region, copies.find((c) => c.url === url)?.m.raw ?? '', entry, { signing }));
    const changed = [...written].filter(([, r]) => r.ok && !r.value).map(([url]) => url);
    const failed = [...written].filter(([, r]) => !r.ok).map(([url]) => url);
    if (changed.length > 0 && round < ACTIVATE_ROUNDS) continue;
    if ([...written.values()].every((r) => !r.ok || !r.value)) throw new Error(`${region}'s membership entry changed in the Redis of ${regionsOf(changed).join(', ')} each time it was read (or did not answer): nothing was marked active; run the command again`);
    return {
      region,
      state: 'active',
      rev,
      unreachable: regionsOf([...unreachable, ...failed]),
      // Its copy there did not verify: written over with the fresh entry.
      ...(notVerified.length ? { not_verified: regionsOf(notVerified) } : {}),
      ...(changed.length ? { changed: regionsOf(changed) } : {}),
    };
  }
}

/** A member as `list` prints it: per region whose Redis knows it, its state there and whether that copy verifies. */
interface ListedMember {
  region: string;
  known_in: Record<string, Member['state']>;
  /** Null for each when nothing was checked (`verification` says why). */
  verified_in: Record<string, boolean | null>;
  joined_at: string | null;
}

/** A region removed for good, as `list` shows it. */
interface ListedRemoval {
  region: string;
  /** Without its signature: the latest of the copies that verify, where one does. */
  removed_at: string;
  known_in: string[];
  /** Per Redis, whether its removal record verifies; null for each when nothing was checked. */
  verified_in: Record<string, boolean | null>;
}

/**
 * How `list` checks the copies: `off` (the regions write entries unsigned: nothing checked), `checked` (the
 * regions' key), or `unknown` (they sign, and REPLICATION_KEYS is missing or unreadable here: listed unchecked,
 * with a warning; the other commands that need the key refuse instead).
 */
function listChecking(file: ConfigFile, configPath: string): { auth: EventAuth | null; verification: 'off' | 'checked' | 'unknown' } {
  try {
    const signing = scriptSigning(file, configPath);
    return signing ? { auth: signing.auth, verification: 'checked' } : { auth: null, verification: 'off' };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`warning: the regions sign their membership entries (ackSignatures ${file.ackSignatures}), and ${err.message}: listed without checking them (verified_in: null)\n`);
    return { auth: null, verification: 'unknown' };
  }
}

/** What `npm run members` does once its arguments parse (scripts/members.ts). */
export async function runMembers(command: string, region: string | undefined, flags: { force: boolean; redisUrl: string | null }): Promise<void> {
  const { force } = flags;
  const configPath = regionsConfigPath();
  const connections = new Map<string, Redis>();
  try {
    const file = withRedisOverrides(readRegionsConfig().file);
    const prefix = file.redisKeyPrefix;
    const keys = replicationKeys(prefix);
    // Before anything is read or written: `activate` and `remove` sign what they write where the regions sign.
    const writer = { signing: command === 'list' ? null : scriptSigning(file, configPath) };
    // One connection per distinct Redis; each is named after the regions it serves.
    const servers = new Map<string, string[]>();
    for (const r of file.regions) servers.set(redisUrlOf(file, r.id), [...(servers.get(redisUrlOf(file, r.id)) ?? []), r.id]);
    const connect = (url: string) => createRedis(url, `members:${process.pid}`, { queueWhileOffline: true, commandTimeoutMs: 5000 });
    // Each Redis asked once first: one that cannot be reached (refused, a wrong URL) is said at once, with why, and
    // counted unreachable without waiting out the commands' bound; none reachable fails the command (see noneReached).
    const down = await unreachableRedis(deploymentRedis(file, configPath));
    const noneReached = down.size === servers.size;
    // `activate` and `remove` with no Redis to act on: said as that (they said "<region> is not a member").
    if (noneReached && command !== 'list') throw new RedisUnreachable(`no Redis of the deployment could be reached, so nothing was done: ${[...down.values()].join('; ')}`);
    for (const line of down.values()) process.stderr.write(`warning: ${line}\n`);
    for (const url of servers.keys()) if (!down.has(url)) connections.set(url, connect(url));
    const redisOf = (url: string): Redis => {
      const redis = connections.get(url);
      if (!redis) throw new RedisUnreachable(down.get(url));
      return redis;
    };
    const each = <T>(fn: (redis: Redis) => Promise<T>) => eachRegion([...servers.keys()], async (url) => fn(redisOf(url)));
    const unreachable = (res: Map<string, { ok: boolean }>) => [...res].filter(([, r]) => !r.ok).flatMap(([url]) => servers.get(url) ?? []);
    let result: unknown;
    if (command === 'activate' && writer.signing) {
      result = await activateSigned({ region: region as string, file, configPath, keys, signing: writer.signing, servers, redisOf });
    } else if (command === 'activate') {
      const res = await each((redis) => updateMember(redis, keys, region as string, { state: 'active' }, writer));
      if (![...res.values()].some((r) => r.ok && r.value)) throw new Error(`${region} is not a member (it registers itself when it starts)`);
      result = { region, state: 'active', unreachable: unreachable(res) };
    } else if (command === 'remove') {
      // The last member is never removed: no region would be left to adopt its credentials or to hold the
      // record of the deployment (a slip of the operator's, not a way to take a deployment down).
      const known = await each((redis) => readMembers(redis, keys));
      const names = [...known.values()].flatMap((r) => (r.ok ? [...r.value.members.keys()] : []));
      if (names.includes(region as string) && names.every((m) => m === region)) {
        throw new Error(`${region} is the deployment's last member; removing it would leave no region to take over its credentials. Nothing was done.`);
      }
      // A name no Redis knows, as a member or as removed: a slip (a misspelt id), not a removal to record.
      if (!force && !names.includes(region as string)) {
        const departed = await each(async (redis) => (await redis.hexists(keys.departed, region as string)) === 1);
        if (![...departed.values()].some((r) => r.ok && r.value)) {
          throw new Error(`${region} is not a member, and no Redis that answered records it as removed (members: ${[...new Set(names)].sort().join(', ') || 'none'}). Nothing was done; \`${operatorCommand(configPath, 'members', `remove ${region} --force`)}\` records the removal all the same.`);
        }
      }
      if (file.regions.some((r) => r.id === region)) process.stderr.write(`warning: ${configPath} still names ${region}; regions using it keep counting it\n`);
      // A region added at runtime had a Redis of its own that the config, with the region taken out of it,
      // no longer names: its inbox and its copy of the record are there. The record's address is not used
      // on its own: anyone who can write to a Redis of the deployment can write it, and the tool would send
      // it the default credentials. The operator names that Redis (--redis-url); else the output says where
      // the record points and what was left there.
      const recorded = [...known.values()].flatMap((r) => (r.ok ? [r.value.members.get(region as string)?.redisUrl ?? null] : [])).find((u) => u) ?? null;
      const own = flags.redisUrl ? withCredentialsOf(flags.redisUrl, file.redisUrl) : null;
      if (own && !servers.has(own)) {
        servers.set(own, [region as string]);
        // Asked once first, as the config's are: one that cannot be reached is said at once, with why, and
        // counted unreachable (it was, after the commands' bound, with nothing said).
        const [problem] = (await unreachableRedis([{ url: own, regions: [region as string], check: 'the URL given with --redis-url' }])).values();
        if (problem === undefined) connections.set(own, connect(own));
        else {
          down.set(own, problem);
          process.stderr.write(`warning: ${problem}\n`);
        }
      }
      const notContacted = !own && recorded && !servers.has(withCredentialsOf(recorded, file.redisUrl)) ? recorded : null;
      // A region that still runs registers itself again seconds after its removal (membership.ts).
      const running = force ? null : await runningConnection([...connections.values()], prefix, region as string);
      if (running) {
        throw new Error(`${region} is still running: its process's connection ${running.name} (from ${running.addr}) issued a command ${running.idle} s ago, and a running region registers itself again. Stop its processes (its /healthz no longer answers), then remove it; --force removes it all the same. Nothing was done.`);
      }
      // One removal, one time in every Redis (moved past the registration of the entry removed where that is later).
      const at = Date.now();
      const res = await each((redis) => removeMember(redis, keys, region as string, force, writer, at));
      const removed = [...res.values()].some((r) => r.ok && r.value.removed);
      const inboxDeleted = [...res.values()].some((r) => r.ok && r.value.inboxDeleted);
      result = { region, removed, inboxDeleted, unreachable: unreachable(res), ...(notContacted ? { not_contacted: notContacted } : {}) };
      if (notContacted) {
        process.stderr.write(`warning: ${region}'s membership entry records a Redis of its own at ${notContacted}, which no config names; it was not contacted (its inbox and its copy of the record stay there). To clear them, run the command again with --redis-url <that Redis's URL> (the default redisUrl's credentials are sent to it unless the URL carries its own)\n`);
      }
    } else {
      // In `sign` and `require` each copy is checked with the regions' key; without it the list is still shown.
      const checked = listChecking(file, configPath);
      const res = await each(async (redis) => ({ ...(await readMembers(redis, keys, checked.auth)), departed: await redis.hgetall(keys.departed) }));
      const members = new Map<string, ListedMember>();
      for (const [url, r] of res) {
        if (!r.ok) continue;
        for (const m of r.value.members.values()) {
          const entry = members.get(m.region) ?? { region: m.region, known_in: {}, verified_in: {}, joined_at: m.joinedAt };
          // The time it registered as a copy that verifies says it, where one does (an unverified copy's is anyone's).
          if (m.verified === 'signed' && !Object.values(entry.verified_in).includes(true)) entry.joined_at = m.joinedAt;
          for (const id of servers.get(url) ?? []) {
            entry.known_in[id] = m.state;
            entry.verified_in[id] = m.verified === null ? null : m.verified === 'signed';
          }
          members.set(m.region, entry);
        }
      }
      // The regions removed for good, and the Redis that hold the record (the regions' processes copy it into
      // the others: their credentials are adopted once every member knows, docs/operations.md, "Removing a region").
      const departed = new Map<string, ListedRemoval>();
      /** Per removed region, each copy's time (without its signature) and whether it verifies. */
      const copies = new Map<string, { time: string; verified: boolean | null }[]>();
      for (const [url, r] of res) {
        if (!r.ok) continue;
        for (const [region, at] of Object.entries(r.value.departed)) {
          if (members.has(region)) continue;
          // Per Redis, whether its record verifies (under require one that does not counts as absent).
          const verified = checked.auth ? checkDeparture(checked.auth, region, at).verdict === 'signed' : null;
          const entry = departed.get(region) ?? { region, removed_at: '', known_in: [], verified_in: {} };
          for (const id of servers.get(url) ?? []) {
            entry.known_in.push(id);
            entry.verified_in[id] = verified;
          }
          departed.set(region, entry);
          copies.set(region, [...(copies.get(region) ?? []), { time: departureTime(at), verified }]);
        }
      }
      for (const d of departed.values()) {
        d.known_in.sort();
        // The latest removal (a region removed, added again and removed again), of the copies that verify where
        // one does (an unverified copy's time is anyone's).
        const all = copies.get(d.region) ?? [];
        const trusted = all.filter((c) => c.verified === true);
        d.removed_at = (trusted.length ? trusted : all).map((c) => c.time).sort().at(-1) ?? '';
      }
      result = { members: [...members.values()], departed: [...departed.values()], unreachable: unreachable(res), verification: checked.verification };
      // Nothing could be read: no list to trust (the JSON still says which Redis did not answer).
      if (![...res.values()].some((r) => r.ok)) {
        process.exitCode = 1;
        if (noneReached) process.stderr.write('members failed: no Redis of the deployment could be reached (above); the list is empty for that, not because there are no members\n');
      }
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    process.stderr.write(`members failed: ${(err as Error).message}\n`);
    process.exitCode = err instanceof NothingVerifies ? 2 : failureStatus(err);
  } finally {
    for (const c of connections.values()) c.disconnect();
  }
}

