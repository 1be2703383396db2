/**
 * After the faults: wait until every region's table digests (GET /admin/replication/digest) are identical,
 * then check each acknowledged write in every region's own database, read directly (not through the API,
 * so a read path bug cannot hide or fake a row).
 */
import { Client, Pool } from 'pg';
import { sleep } from './common';
import { digest, type Digest, type RegionClient } from './client';
import type { Expected } from './load';
import type { OrgLoadResult } from './org-load';

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

/** Where an organization's rows are, per table: its own row, and what it owns (a credential's parts carry org_id too). */
const ORG_ROWS: readonly { table: string; column: string }[] = [
  { table: 'organizations', column: 'id' },
  { table: 'organizations', column: 'parent_id' },
  { table: 'api_keys', column: 'org_id' },
  { table: 'saml_provider_credentials', column: 'org_id' },
  { table: 'saml_credential_metadata', column: 'org_id' },
  { table: 'saml_sso_settings', column: 'org_id' },
  { table: 'infisical_saml_configs', column: 'org_id' },
];

/** Live rows of each organization in one region's database, per table (only those with any). */
export async function liveRowsOfOrgs(dbUrl: string, orgIds: readonly string[]): Promise<Map<string, Record<string, number>>> {
  const db = new Client({ connectionString: dbUrl, connectionTimeoutMillis: 10_000 });
  await db.connect();
  try {
    const parts = ORG_ROWS.map(({ table, column }) => `SELECT '${table}.${column}' AS t, ${column}::text AS org, count(*)::int AS n FROM ${table} WHERE ${column} = ANY($1::uuid[]) AND deleted_at IS NULL GROUP BY ${column}`);
    const r = await db.query<{ t: string; org: string; n: number }>(parts.join(' UNION ALL '), [orgIds]);
    const out = new Map<string, Record<string, number>>();
    for (const row of r.rows) out.set(row.org, { ...out.get(row.org), [row.t]: row.n });
    return out;
  } finally {
    await db.end();
  }
}

export interface SweepWait {
  /** ms from `since` until no region's database held a live row of the deleted organizations; null if not within the limit. */
  ms: number | null;
  /** What was still live at the last look: region -> org -> table -> rows. */
  live: Record<string, Record<string, Record<string, number>>>;
}

/**
 * Polls every region's database until none holds a live row of the deleted organizations: a row the delete
 * did not take (written where it had not arrived yet) is tombstoned by the next tombstone collection cycle
 * there, and replicated. A region whose database cannot be read counts as not swept.
 */
export async function waitSwept(dbUrls: Record<string, string>, orgIds: readonly string[], since: number, limitMs: number): Promise<SweepWait> {
  let live: SweepWait['live'] = {};
  while (Date.now() - since <= limitMs) {
    live = {};
    const got = await Promise.all(Object.entries(dbUrls).map(async ([r, url]) => [r, await liveRowsOfOrgs(url, orgIds).catch(() => null)] as const));
    for (const [r, m] of got) {
      if (m === null) live[r] = { '*': { unreadable: 1 } };
      else if (m.size) live[r] = Object.fromEntries(m);
    }
    if (orgIds.length === 0 || Object.keys(live).length === 0) return { ms: Date.now() - since, live };
    await sleep(500);
  }
  return { ms: null, live };
}

/** What one region answered that it should not have, for an organization of the run's second load. */
export interface Served {
  org: string;
  region: string;
  what: string;
  status: number | string;
  expected: number;
}

const CREDENTIALS = '/organizations/sso/saml/provider-credentials';

/**
 * Asks every region, through both dialects, for a deleted organization and a few of its credentials:
 * the admin API does not know it (404), its API key is refused (401) for the list and for each credential,
 * its access token is refused on the Infisical config (401), and its credentials' public SSO metadata is
 * not served (404).
 */
export async function checkDeletedOrg(clients: readonly RegionClient[], adminToken: string, org: { id: string; api_key: string }, token: string, credentialIds: readonly string[]): Promise<Served[]> {
  const key = { 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key };
  const asks: { what: string; path: string; headers: Record<string, string>; expected: number }[] = [
    { what: 'admin GET', path: `/admin/organizations/${org.id}`, headers: { authorization: `Bearer ${adminToken}` }, expected: 404 },
    { what: 'credential list (its key)', path: CREDENTIALS, headers: key, expected: 401 },
    { what: 'Infisical config (its token)', path: `/api/v1/sso/config?organizationId=${org.id}`, headers: { authorization: `Bearer ${token}` }, expected: 401 },
    ...credentialIds.flatMap((id) => [
      { what: `credential ${id} (its key)`, path: `${CREDENTIALS}/${id}`, headers: key, expected: 401 },
      { what: `SSO metadata of ${id}`, path: `/sso/saml/${id}/metadata`, headers: {}, expected: 404 },
    ]),
  ];
  return askAll(clients, org.id, asks);
}

/** A kept organization is served in every region: its key lists its credentials (200), its token reads its Infisical config (200). */
export async function checkKeptOrg(clients: readonly RegionClient[], org: { id: string; api_key: string }, token: string): Promise<Served[]> {
  return askAll(clients, org.id, [
    { what: 'credential list (its key)', path: CREDENTIALS, headers: { 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key }, expected: 200 },
    { what: 'Infisical config (its token)', path: `/api/v1/sso/config?organizationId=${org.id}`, headers: { authorization: `Bearer ${token}` }, expected: 200 },
  ]);
}

async function askAll(clients: readonly RegionClient[], orgId: string, asks: readonly { what: string; path: string; headers: Record<string, string>; expected: number }[]): Promise<Served[]> {
  const out: Served[] = [];
  for (const c of clients) {
    for (const a of asks) {
      const status = await c.call('GET', a.path, { headers: a.headers }).then((r) => r.status, (err: Error) => `error: ${err.message}`);
      if (status !== a.expected) out.push({ org: orgId, region: c.region, what: a.what, status, expected: a.expected });
    }
  }
  return out;
}

export interface OrgVerdict {
  /** Acknowledged writes to the kept organizations, judged as the main organization's. */
  lost: LossCheck['lost'];
  undeleted: LossCheck['undeleted'];
  wrongLabel: LossCheck['wrongLabel'];
  /** Until no live row of a deleted organization was left in any region (from the end of the faults). */
  swept: SweepWait;
  /** The regions' digests again, after the sweep's tombstones replicated (null: no organization deleted). */
  reconverged: Convergence | null;
  /** Answers that served a deleted organization, or did not serve a kept one. */
  served: Served[];
  /**
   * Credentials of the deleted organizations tombstoned after their organization (in the first region): those
   * its delete did not take, written where it had not arrived yet, which the sweep took (or their own DELETE).
   */
  tombstonedAfter: number;
}

/**
 * The verdict on the run's other organizations, after the regions converged: each kept one holds every
 * acknowledged write in every region and is served everywhere; each deleted one has no live row in any
 * region (once the sweep took what the delete did not see) and is refused everywhere, through both dialects.
 * Acknowledged writes to a deleted organization are not judged as lost: the delete took them.
 */
export async function verifyOrgs(
  clients: readonly RegionClient[],
  adminToken: string,
  dbUrls: Record<string, string>,
  orgs: OrgLoadResult['orgs'],
  since: number,
  limitMs: number,
): Promise<OrgVerdict> {
  const deleted = orgs.filter((o) => o.org.delete);
  const swept = await waitSwept(dbUrls, deleted.map((o) => o.org.org.id), since, limitMs);
  const reconverged = deleted.length ? await waitConverged(clients, adminToken, Date.now(), limitMs) : null;
  const v: OrgVerdict = { lost: [], undeleted: [], wrongLabel: [], swept, reconverged, served: [], tombstonedAfter: await tombstonedAfter(Object.values(dbUrls)[0] ?? '', deleted.map((o) => o.org.org.id)) };
  for (const { org, load } of orgs) {
    if (org.delete) {
      v.served.push(...(await checkDeletedOrg(clients, adminToken, org.org, org.token, [...load.acked.keys()].slice(0, 3))));
      continue;
    }
    const loss = await checkAcknowledged(dbUrls, org.org.id, load.acked, load.expected);
    v.lost.push(...loss.lost);
    v.undeleted.push(...loss.undeleted);
    v.wrongLabel.push(...loss.wrongLabel);
    v.served.push(...(await checkKeptOrg(clients, org.org, org.token)));
  }
  return v;
}

async function tombstonedAfter(dbUrl: string, orgIds: readonly string[]): Promise<number> {
  const db = new Client({ connectionString: dbUrl, connectionTimeoutMillis: 10_000 });
  await db.connect();
  try {
    const r = await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM saml_provider_credentials c JOIN organizations o ON o.id = c.org_id WHERE o.id = ANY($1::uuid[]) AND c.deleted_at > o.deleted_at',
      [orgIds],
    );
    return r.rows[0]?.n ?? 0;
  } finally {
    await db.end();
  }
}
