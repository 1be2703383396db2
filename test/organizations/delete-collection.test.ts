/**
 * The collector and a deleted organization's remainder (in-process region, real Postgres and Redis): an
 * organization's tombstone is not collected while rows it owns are live in the region. Collected first, it
 * left them live for ever: the part sweep finds such rows through their organization's tombstone only, and a
 * deleted organization's IdP documents, labels and URLs would stay in the database. Minimum age 0 and a 10 s
 * write bound here (3 s timed the 200-row delete out on a loaded host), so the horizon passes the delete within
 * ~25 s; the cycles run when the test calls them.
 */
import { poolOf } from '../../src/db/client';
import { collectionCutoff } from '../../src/replication/horizon';
import { OWNED_WRITES_PER_CYCLE } from '../../src/replication/parts';
import { OWNED_DELETE_BATCH } from '../../src/replication/tables';
import { adminHeaders, call, createOrg, eventually } from '../support/harness';
import { startInProcess, type InProcessRegion } from '../support/in-process';

let r: InProcessRegion;

beforeAll(async () => {
  r = await startInProcess('org-delete-collect', ['us-iowa'], { tombstoneCollection: { enabled: false, minAgeMs: 0, intervalMs: 1_000 }, writeTransactionTimeoutMs: 10_000 });
}, 60_000);
afterAll(async () => {
  await r?.stop();
});

const sql = <T = Record<string, unknown>>(text: string, values: unknown[] = []) => poolOf(r.region.db).query(text, values).then((res) => res.rows as T[]);

test("an organization's tombstone is kept while rows it owns are live here, and collected once the sweep took them", async () => {
  const collector = r.region.replication.tombstones;
  if (!collector) throw new Error('no collector');
  const org = await createOrg(r.url, 'larger than a cycle');
  // More than the delete's change and one cycle's sweep take: 50 stay live after the first cycle.
  const left = 50;
  const extra = OWNED_DELETE_BATCH - 1 + OWNED_WRITES_PER_CYCLE * OWNED_DELETE_BATCH + left;
  const version = `${String(Date.now()).padStart(15, '0')}.000000.us-iowa`;
  await sql(
    `INSERT INTO saml_provider_credentials (id, org_id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server, home_region, created_at, updated_at, version, created_version, origin_region)
     SELECT gen_random_uuid(), $1, 'bulk', 'https://idp.example/m.xml', '{}', false, 'us-iowa', now(), now(), $2, $2, 'us-iowa' FROM generate_series(1, $3)`,
    [org.id, version, extra],
  );
  expect((await call(r.url, 'DELETE', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(204);
  const [{ v }] = await sql<{ v: string }>('SELECT version AS v FROM organizations WHERE id = $1', [org.id]);
  // No cycle has run yet: wait until the horizon has passed the delete, so the first cycle may collect it.
  const passed = async () => {
    await collector.report();
    const { horizon } = await collector.horizon();
    return horizon !== null && collectionCutoff(horizon, 0) > v;
  };
  expect(await eventually(passed, 60_000, 250)).toBe(true);

  const live = async () => (await sql<{ n: number }>('SELECT count(*)::int AS n FROM saml_provider_credentials WHERE org_id = $1 AND deleted_at IS NULL', [org.id]))[0]?.n;
  const organization = async () => (await sql<{ deleted: boolean }>('SELECT deleted_at IS NOT NULL AS deleted FROM organizations WHERE id = $1', [org.id]))[0];
  await collector.cycle();
  // One cycle's sweep takes OWNED_WRITES_PER_CYCLE changes at most (fewer if one collided): some stay live.
  expect(await live()).toBeGreaterThanOrEqual(left);
  // Kept: the next cycles' sweep finds the rest through it.
  expect(await organization()).toEqual({ deleted: true });
  // Taken by a cycle once nothing of it was live (its tombstoned rows go as their own versions pass).
  const collected = async () => {
    await collector.cycle();
    return (await live()) === 0 && (await organization()) === undefined;
  };
  expect(await eventually(collected, 60_000, 100)).toBe(true);
}, 150_000);
