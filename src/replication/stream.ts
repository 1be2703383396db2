/** Small helpers over the Redis change stream shared by the applier, the relay and the admin status. */
import type { Redis, ReplicationKeys } from '../redis';

export type StreamEntry = [id: string, fields: string[]];

export function compareStreamIds(a: string, b: string): number {
  const [am, as] = a.split('-').map((x) => BigInt(x));
  const [bm, bs] = b.split('-').map((x) => BigInt(x));
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

/** Creates a consumer group for every configured region, reading from the start of the stream. */
export async function ensureGroups(redis: Redis, keys: ReplicationKeys, regions: readonly string[]): Promise<void> {
  for (const region of regions) {
    try {
      await redis.xgroup('CREATE', keys.stream, region, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
  }
}

export interface GroupInfo {
  name: string;
  pending: number;
  lastDeliveredId: string;
  /** Entries not yet delivered to the group (Redis 7); null when Redis cannot tell. */
  lag: number | null;
}

export async function groupInfo(redis: Redis, keys: ReplicationKeys): Promise<GroupInfo[]> {
  const raw = (await redis.xinfo('GROUPS', keys.stream)) as unknown[][];
  return raw.map((flat) => {
    const m = new Map<string, unknown>();
    for (let i = 0; i + 1 < flat.length; i += 2) m.set(String(flat[i]), flat[i + 1]);
    const lag = m.get('lag');
    return {
      name: String(m.get('name')),
      pending: Number(m.get('pending') ?? 0),
      lastDeliveredId: String(m.get('last-delivered-id') ?? '0-0'),
      lag: lag === null || lag === undefined ? null : Number(lag),
    };
  });
}

export function eventField(fields: string[]): string | null {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'e') return fields[i + 1] ?? null;
  return null;
}
