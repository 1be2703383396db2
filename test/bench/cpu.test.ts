/**
 * The bench's Redis CPU is that of its own Redis server when its pid is known (bench/cpu.ts redisServerPid):
 * every redis-server on a shared host (other tenants' test servers, started and stopped during a run) made
 * the column move, even below zero. Against the real Redis; no figure of time is asserted.
 */
import fs from 'node:fs';
import Redis from 'ioredis';
import { redisServerPid } from '../../bench/cpu';
import { REDIS_URL } from '../support/env';

test('the pid in the Redis server\'s INFO is taken when that process is a redis-server on this host', async () => {
  const redis = new Redis(REDIS_URL);
  try {
    const info = await redis.info('server');
    const named = Number(/^process_id:(\d+)/m.exec(info)?.[1]);
    // A server of another host or pid namespace (a container) names a pid that is not its process here.
    const local = fs.existsSync(`/proc/${named}`);
    expect(redisServerPid(info)).toBe(local ? named : null);
  } finally {
    redis.disconnect();
  }
});

test('a pid that is not a redis-server here, or no pid at all, gives none (every Redis server is counted then)', () => {
  expect(redisServerPid(`# Server\r\nredis_version:7.0.0\r\nprocess_id:${process.pid}\r\n`)).toBeNull();
  expect(redisServerPid('# Server\r\nredis_version:7.0.0\r\n')).toBeNull();
});
