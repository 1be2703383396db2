/**
 * After the faults: wait until every region's table digests (GET /admin/replication/digest) are identical,
 * then check each acknowledged write in every region's own database, read directly (not through the API,
 * so a read path bug cannot hide or fake a row).
 */
import { Client } from 'pg';
import { sleep } from './common';
import { digest, type Digest, type RegionClient } from './client';

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
}

export async function checkAcknowledged(
  dbUrls: Record<string, string>,
  orgId: string,
  acked: ReadonlyMap<string, string>,
): Promise<LossCheck> {
  const regions = Object.keys(dbUrls);
  const rows = await Promise.all(regions.map((r) => credentialsInDb(dbUrls[r] ?? '', orgId)));
  const lost: LossCheck['lost'] = [];
  for (const [id, ackedBy] of acked) {
    const missingIn = regions.filter((_, i) => !rows[i]?.has(id));
    if (missingIn.length) lost.push({ id, ackedBy, missingIn });
  }
  const all = new Set(rows.flatMap((m) => [...m.keys()]));
  return {
    lost,
    rowsPerRegion: Object.fromEntries(regions.map((r, i) => [r, rows[i]?.size ?? 0])),
    committedUnacknowledged: [...all].filter((id) => !acked.has(id)).length,
  };
}
