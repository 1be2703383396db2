/**
 * `npm run members -- list | activate <region> | remove <region>`: the deployment's membership record
 * (src/replication/membership.ts). `list` prints the record; `activate` marks a joined region active (the
 * re-seed does it too); `remove` takes a region out of the deployment for good — its entry and its consumer
 * group — so the other regions stop waiting for it, confirming without it and keeping the stream for it.
 * Stop the region and take it out of every config file first. Reads REGIONS_CONFIG (default
 * ./regions.config.json) for the Redis URL and key prefix; prints JSON.
 */
import path from 'node:path';
import { ConfigError, readConfigFile } from '../src/config';
import { createRedis, replicationKeys } from '../src/redis';
import { readMembers, removeMember, updateMember } from '../src/replication/membership';

async function main(): Promise<void> {
  const [command, region] = process.argv.slice(2);
  if (command !== 'list' && !((command === 'activate' || command === 'remove') && region)) {
    process.stderr.write('usage: npm run members -- list | activate <region> | remove <region>\n');
    process.exit(2);
  }
  const configPath = path.resolve(process.env.REGIONS_CONFIG || './regions.config.json');
  let redis: ReturnType<typeof createRedis> | null = null;
  try {
    const file = readConfigFile(configPath);
    const keys = replicationKeys(process.env.REDIS_KEY_PREFIX || file.redisKeyPrefix);
    redis = createRedis(process.env.REDIS_URL || file.redisUrl, `members:${process.pid}`, { queueWhileOffline: true });
    let result: unknown;
    if (command === 'activate') {
      if (!(await updateMember(redis, keys, region as string, { state: 'active' }))) throw new Error(`${region} is not a member (it registers itself when it starts)`);
      result = { region, state: 'active' };
    } else if (command === 'remove') {
      if (file.regions.some((r) => r.id === region)) process.stderr.write(`warning: ${configPath} still names ${region}; regions using it keep counting it\n`);
      result = { region, ...(await removeMember(redis, keys, region as string)) };
    } else {
      const { members, generation } = await readMembers(redis, keys);
      result = { generation, members: [...members.values()].map((m) => ({ region: m.region, state: m.state, since: m.since, joined_at: m.joinedAt })) };
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    process.stderr.write(`members failed: ${err instanceof ConfigError ? err.message : (err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    redis?.disconnect();
  }
}

void main();
