/**
 * One process's Membership over the test Redis alone (its own Redis, and every configured region's too), under a
 * key prefix of its own: for tests of the record's rules without region processes. Call it at a test file's top
 * level: its connections close, and its keys go, after the file's tests (afterAll).
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import pino from 'pino';
import { replicationKeys } from '../../src/redis';
import type { AckSigning } from '../../src/replication/ack-auth';
import { RedisLinks } from '../../src/replication/links';
import { Membership } from '../../src/replication/membership';
import { deleteKeys, REDIS_URL } from './env';

export function membershipRig(label: string, region: string, configured: readonly string[], signing?: AckSigning) {
  const prefix = `test-${label}-${randomUUID().slice(0, 8)}:`;
  const keys = replicationKeys(prefix);
  const redis = new Redis(REDIS_URL);
  const subscriber = new Redis(REDIS_URL);
  const links = new RedisLinks({ region, own: redis, name: `${label}-test`, defaultUrl: REDIS_URL, configured: new Map(configured.map((r) => [r, REDIS_URL])) });
  const membership = new Membership({ links, subscriber, keys, region, configured: [...configured], ownRedisUrl: REDIS_URL, log: pino({ level: 'silent' }), ...(signing ? { signing } : {}) });
  afterAll(async () => {
    membership.stop();
    links.disconnect();
    await deleteKeys(prefix);
    redis.disconnect();
    subscriber.disconnect();
  });
  return { prefix, keys, redis, subscriber, links, membership };
}
