/**
 * After the faults: wait until every region's table digests (GET /admin/replication/digest) are identical,
 * then check each acknowledged write in every region's own database, read directly (not through the API,
 * so a read path bug cannot hide or fake a row).
 */
import { Client, Pool } from 'pg';
import { sleep } from './common';
import { digest, type Digest, type RegionClient } from './client';
import type { Expected } from './load';

export interface Convergence {
  /** ms from the end of the faults until the digests were identical; null if they never were within the limit. */
  ms: number | null;
  digests: Record<string, Digest | string>;
}

export async function waitConverged(clients: readonly RegionClient[], adminToken: string, since: number, limitMs: number): Promise<Convergence> {
  let last: Record<string, Digest | string> = {};
  while (Date.now() - since <= limitMs) {
    const got = await Promise.all(clients.map((c) => digest(c, adminToken).catch((err: Error) => `unavailable: ${err.message}`)));
    last = Object.fromEntries(clients.map((c, i) => [c.region, got[i] ?? 'missing']));
    const texts = got.map((d) => JSON.stringify(d));
    if (got.every((d) => typeof d === 'object') && new Set(texts).size === 1) return { ms: Date.now() - since, digests: last };
    await sleep(250);
  }
  return { ms: null, digests: last };
}

/** id -> label of the org's live credentials in one region's database. */
export async function credentialsInDb(dbUrl: string, orgId: string): Promise<Map<string, string>> {
  const db = new Client({ connectionString: dbUrl, connectionTimeoutMillis: 10_000 });
  await db.connect();
  try {
    const r = await db.query<{ id: string; label: string }>(
      'SELECT id::text, label FROM saml_provider_credentials WHERE org_id = $1::uuid AND deleted_at IS NULL',
      [orgId],
    );
    return new Map(r.rows.map((x) => [x.id, x.label]));
  } finally {
    await db.end();
  }
}

export interface LossCheck {
  /** Acknowledged ids missing from at least one region, with where they are missing. */
  lost: { id: string; ackedBy: string; missingIn: string[] }[];
  rowsPerRegion: Record<string, number>;
  /** Rows of this run that exist although no answer acknowledged them (a request cut off by a fault). */
  committedUnacknowledged: number;
  /** Acknowledged DELETEs whose credential is live in some region. */
  undeleted: { id: string; liveIn: string[] }[];
  /** Credentials whose label in some region is not one of the expected (an acknowledged PATCH lost, or older). */
  wrongLabel: { id: string; expected: string[]; got: Record<string, string> }[];
}

export async function checkAcknowledged(
  dbUrls: Record<string, string>,
  orgId: string,
  acked: ReadonlyMap<string, string>,
  expected: ReadonlyMap<string, Expected> = new Map(),
): Promise<LossCheck> {
  const regions = Object.keys(dbUrls);
  const rows = await Promise.all(regions.map((r) => credentialsInDb(dbUrls[r] ?? '', orgId)));
  const lost: LossCheck['lost'] = [];
  const undeleted: LossCheck['undeleted'] = [];
  const wrongLabel: LossCheck['wrongLabel'] = [];
  for (const [id, e] of expected) {
    if (e.deleted === 'acked') {
      const liveIn = regions.filter((_, i) => rows[i]?.has(id));
      if (liveIn.length) undeleted.push({ id, liveIn });
    } else if (e.deleted === 'no') {
      const got = Object.fromEntries(regions.flatMap((r, i) => { const l = rows[i]?.get(id); return l === undefined ? [] : [[r, l]]; }));
      if (Object.values(got).some((l) => !e.labels.has(l))) wrongLabel.push({ id, expected: [...e.labels], got });
    }
  }
  for (const [id, ackedBy] of acked) {
    // A DELETE was sent for it: judged above (or not at all when its answer did not come).
    if ((expected.get(id)?.deleted ?? 'no') !== 'no') continue;
    const missingIn = regions.filter((_, i) => !rows[i]?.has(id));
    if (missingIn.length) lost.push({ id, ackedBy, missingIn });
  }
  const all = new Set(rows.flatMap((m) => [...m.keys()]));
  return {
    lost,
    rowsPerRegion: Object.fromEntries(regions.map((r, i) => [r, rows[i]?.size ?? 0])),
    committedUnacknowledged: [...all].filter((id) => !acked.has(id)).length,
    undeleted,
    wrongLabel,
  };
}

/**
 * Reads, right after an all_regions create was answered 201, whether every region's own database holds it:
 * a 201 under all_regions promises that every region applied the write before the answer. A region whose
 * database cannot be read in time (partitioned, restarting) is not judged.
 */
export class AllRegionsProbe {
  private readonly pools: Map<string, Pool>;
  checked = 0;
  /** Regions whose database could not be read, per check (not judged). */
  unknown = 0;

  constructor(dbUrls: Record<string, string>) {
    this.pools = new Map(
      Object.entries(dbUrls).map(([r, url]) => {
        const pool = new Pool({ connectionString: url, max: 4, idleTimeoutMillis: 0, connectionTimeoutMillis: 3000, query_timeout: 3000 });
        pool.on('error', () => undefined);
        return [r, pool];
      }),
    );
  }

  /**
   * The regions whose database answered and holds no row of credential `id` (a tombstone counts: the client
   * may have deleted it since, and the deletion may have reached that region before this read).
   */
  async missingIn(id: string): Promise<string[]> {
    this.checked++;
    const got = await Promise.all(
      [...this.pools].map(async ([r, pool]) => {
        try {
          const res = await pool.query('SELECT 1 FROM saml_provider_credentials WHERE id = $1::uuid', [id]);
          return res.rowCount === 1 ? null : r;
        } catch {
          this.unknown++;
          return null;
        }
      }),
    );
    return got.filter((r): r is string => r !== null);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.end().catch(() => undefined)));
  }
}
