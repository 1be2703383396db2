/**
 * The applier sends a batch's transaction before it asks Redis for the next batch: each socket write that
 * wakes another process costs the writer time, and the read sent first delayed every apply (so every
 * all_regions wait) by that much.
 */
import type { PoolClient } from 'pg';
import { createRedis } from '../../src/redis';
import { createApplyPool } from '../../src/replication/pg-tx';
import { REDIS_URL } from '../support/env';
import { eventually } from '../support/harness';
import { orgEvent, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
const pool = { current: null as ReturnType<typeof createApplyPool> | null };
const reader = createRedis(REDIS_URL, 'applier-order-test');

afterAll(async () => {
  await rig?.cleanup();
  await pool.current?.end();
  reader.disconnect();
});

test('a batch\'s transaction is sent before the next read of the inbox', async () => {
  rig = await startApplierRig('applierorder');
  const log: string[] = [];
  // What goes out, in order: each read of the inbox (new entries or a reclaim; how many it brought), each
  // transaction.
  const call = reader.call.bind(reader) as (...args: unknown[]) => Promise<unknown>;
  (reader as unknown as { call: (...args: unknown[]) => Promise<unknown> }).call = async (...args: unknown[]) => {
    if (args[0] !== 'XREADGROUP' && args[0] !== 'XAUTOCLAIM') return call(...args);
    log.push('read');
    const res = (await call(...args)) as [string, unknown[]][] | null;
    log.push(`got ${(args[0] === 'XREADGROUP' ? res?.[0]?.[1] : res?.[1])?.length ?? 0}`);
    return res;
  };
  pool.current = createApplyPool(rig.databaseUrl);
  const connect = pool.current.connect.bind(pool.current) as () => Promise<PoolClient>;
  const wrapped = new WeakSet<PoolClient>();
  (pool.current as unknown as { connect: () => Promise<PoolClient> }).connect = async () => {
    const client = await connect();
    if (wrapped.has(client)) return client;
    wrapped.add(client);
    const query = client.query.bind(client) as (text: string) => Promise<unknown>;
    (client as unknown as { query: (text: string) => Promise<unknown> }).query = (text: string) => {
      if (typeof text === 'string' && text.includes('BEGIN')) log.push('transaction');
      return query(text);
    };
    return client;
  };
  const applier = await rig.applier({ reader, pool: pool.current });
  applier.start();
  const applied = async (label: string) => {
    const event = orgEvent(label);
    await rig.publish(event);
    expect(await eventually(async () => (await rig.db.organization.findUnique({ where: { id: event.orgId } })) !== null, 10_000, 20)).toBe(true);
  };
  // The first apply opens the pool's connection (its transaction waits for that); the second finds it idle.
  await applied('opens the connection');
  await new Promise((r) => setTimeout(r, 100));
  log.length = 0;
  await applied('ordered');
  // The row is there once the transaction committed; the next read may go out a moment later (a clean-clone
  // CI once checked before it had).
  expect(await eventually(async () => log.slice(log.indexOf('got 1')).length >= 3, 5_000, 10)).toBe(true);
  expect(log.slice(log.indexOf('got 1'), log.indexOf('got 1') + 3)).toEqual(['got 1', 'transaction', 'read']);
  await applier.stop();
});
