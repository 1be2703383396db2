/**
 * `npm run members -- list | activate <region> | remove <region>`: the deployment's membership record
 * (src/replication/membership.ts), of which every region's Redis holds a copy. `list` prints, per member,
 * the regions whose Redis knows it and its state there, and the regions removed for good (where that is
 * recorded); `activate` marks a joined region active (the
 * re-seed does it too); `remove` takes a region out of the deployment for good — its entry in every
 * Redis, and its inbox — so the other regions stop waiting for it and delivering to it, and records the
 * removal (its credentials are adopted), in the removed region's own Redis too when `--redis-url` names it (a
 * region added at runtime; its membership entry's address is shown, never used: see main); `--force` records it also where the region is no longer a member
 * (a Redis that lost the record while no process remembered it), and removes a region that still runs,
 * which `remove` otherwise refuses (see runningConnection). Stop the region and take it out of every
 * config file first. A Redis that does not answer is named in `unreachable`:
 * run the command again once it is up. Reads REGIONS_CONFIG (default ./regions.config.json) for the
 * regions' Redis URLs and the key prefix, REDIS_URL and REDIS_KEY_PREFIX over them as a region takes them, and
 * for `activate` and `remove` in `sign` and `require` modes (`ackSignatures`) REPLICATION_KEYS, to sign the
 * entry or the removal record it writes (from the environment, else the cluster's secrets file); prints JSON.
 */
import { readConfigFile, redisUrlOf, regionsConfigPath, withRedisOverrides } from '../src/config';
import { createRedis, replicationKeys, type Redis } from '../src/redis';
import { isConnectionOf } from '../src/replication/connection-names';
import { eachRegion, withCredentialsOf } from '../src/replication/links';
import { answerHelp, failureStatus, quietOnClosedStdout } from './usage';
import { scriptSigning } from './cluster-secrets';
import { readMembers, removeMember, UnverifiedMemberError, updateMember, type Member } from '../src/replication/member-record';
import { departureTime } from '../src/replication/removal-auth';

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

/** `remove`'s flags (`--force`, `--redis-url <url>`, each at most once), or null when they do not parse. */
function removeFlags(args: readonly string[]): { force: boolean; redisUrl: string | null } | null {
  let force = false;
  let redisUrl: string | null = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--force' && !force) force = true;
    else if (args[i] === '--redis-url' && redisUrl === null && isRedisUrl(args[i + 1])) redisUrl = args[++i] as string;
    else return null;
  }
  return { force, redisUrl };
}

function isRedisUrl(value: string | undefined): boolean {
  try {
    return value !== undefined && ['redis:', 'rediss:'].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

const USAGE = 'usage: npm run members -- list | activate <region> | remove <region> [--force] [--redis-url <url>]';

async function main(): Promise<void> {
  answerHelp(process.argv.slice(2), USAGE);
  quietOnClosedStdout();
  const [command, region, ...rest] = process.argv.slice(2);
  const flags = command === 'remove' ? removeFlags(rest) : rest.length === 0 ? { force: false, redisUrl: null } : null;
  if ((command !== 'list' && !((command === 'activate' || command === 'remove') && region)) || !flags) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }
  const { force } = flags;
  const configPath = regionsConfigPath();
  const connections = new Map<string, Redis>();
  try {
    const file = withRedisOverrides(readConfigFile(configPath));
    const prefix = file.redisKeyPrefix;
    const keys = replicationKeys(prefix);
    // Before anything is read or written: `activate` and `remove` sign what they write where the regions sign.
    const writer = { signing: command === 'list' ? null : scriptSigning(file, configPath) };
    // One connection per distinct Redis; each is named after the regions it serves.
    const servers = new Map<string, string[]>();
    for (const r of file.regions) servers.set(redisUrlOf(file, r.id), [...(servers.get(redisUrlOf(file, r.id)) ?? []), r.id]);
    const connect = (url: string) => createRedis(url, `members:${process.pid}`, { queueWhileOffline: true, commandTimeoutMs: 5000 });
    for (const url of servers.keys()) connections.set(url, connect(url));
    const each = <T>(fn: (redis: Redis) => Promise<T>) =>
      eachRegion([...servers.keys()], (url) => fn(connections.get(url) as Redis));
    const unverified = (r: { ok: boolean; error?: Error }) => !r.ok && r.error instanceof UnverifiedMemberError;
    const unreachable = (res: Map<string, { ok: boolean; error?: Error }>) => [...res].filter(([, r]) => !r.ok && !unverified(r)).flatMap(([url]) => servers.get(url) ?? []);
    let result: unknown;
    if (command === 'activate') {
      const res = await each((redis) => updateMember(redis, keys, region as string, { state: 'active' }, writer));
      // Under require an entry that does not verify is not marked active (its region's processes write it again).
      const notVerified = [...res].filter(([, r]) => unverified(r)).flatMap(([url]) => servers.get(url) ?? []);
      if (![...res.values()].some((r) => r.ok && r.value)) {
        throw new Error(notVerified.length ? `${region}'s membership entry does not verify in the Redis of ${notVerified.join(', ')}: nothing was marked active` : `${region} is not a member (it registers itself when it starts)`);
      }
      result = { region, state: 'active', unreachable: unreachable(res), ...(notVerified.length ? { not_verified: notVerified } : {}) };
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
          throw new Error(`${region} is not a member, and no Redis that answered records it as removed (members: ${[...new Set(names)].sort().join(', ') || 'none'}). Nothing was done; \`remove ${region} --force\` records the removal all the same.`);
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
        connections.set(own, connect(own));
      }
      const notContacted = !own && recorded && !servers.has(withCredentialsOf(recorded, file.redisUrl)) ? recorded : null;
      // A region that still runs registers itself again seconds after its removal (membership.ts).
      const running = force ? null : await runningConnection([...connections.values()], prefix, region as string);
      if (running) {
        throw new Error(`${region} is still running: its process's connection ${running.name} (from ${running.addr}) issued a command ${running.idle} s ago, and a running region registers itself again. Stop its processes (its /healthz no longer answers), then remove it; --force removes it all the same. Nothing was done.`);
      }
      const res = await each((redis) => removeMember(redis, keys, region as string, force, writer));
      const removed = [...res.values()].some((r) => r.ok && r.value.removed);
      const inboxDeleted = [...res.values()].some((r) => r.ok && r.value.inboxDeleted);
      result = { region, removed, inboxDeleted, unreachable: unreachable(res), ...(notContacted ? { not_contacted: notContacted } : {}) };
      if (notContacted) {
        process.stderr.write(`warning: ${region}'s membership entry records a Redis of its own at ${notContacted}, which no config names; it was not contacted (its inbox and its copy of the record stay there). To clear them, run the command again with --redis-url <that Redis's URL> (the default redisUrl's credentials are sent to it unless the URL carries its own)\n`);
      }
    } else {
      const res = await each(async (redis) => ({ ...(await readMembers(redis, keys)), departed: await redis.hgetall(keys.departed) }));
      const members = new Map<string, { region: string; known_in: Record<string, Member['state']>; joined_at: string | null }>();
      for (const [url, r] of res) {
        if (!r.ok) continue;
        for (const m of r.value.members.values()) {
          const entry = members.get(m.region) ?? { region: m.region, known_in: {}, joined_at: m.joinedAt };
          for (const id of servers.get(url) ?? []) entry.known_in[id] = m.state;
          members.set(m.region, entry);
        }
      }
      // The regions removed for good, and the Redis that hold the record (the regions' processes copy it into
      // the others: their credentials are adopted once every member knows, docs/operations.md, "Removing a region").
      const departed = new Map<string, { region: string; removed_at: string; known_in: string[] }>();
      for (const [url, r] of res) {
        if (!r.ok) continue;
        for (const [region, at] of Object.entries(r.value.departed)) {
          if (members.has(region)) continue;
          // The latest removal (a region removed, added again and removed again), without its signature.
          const time = departureTime(at);
          const entry = departed.get(region) ?? { region, removed_at: time, known_in: [] };
          if (time > entry.removed_at) entry.removed_at = time;
          entry.known_in.push(...(servers.get(url) ?? []));
          departed.set(region, entry);
        }
      }
      for (const d of departed.values()) d.known_in.sort();
      result = { members: [...members.values()], departed: [...departed.values()], unreachable: unreachable(res) };
      // Nothing could be read: no list to trust (the JSON still says which Redis did not answer).
      if (![...res.values()].some((r) => r.ok)) process.exitCode = 1;
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    process.stderr.write(`members failed: ${(err as Error).message}\n`);
    process.exitCode = failureStatus(err);
  } finally {
    for (const c of connections.values()) c.disconnect();
  }
}

void main();
