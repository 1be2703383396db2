/**
 * An all_regions create is not reported lost because a later update of the credential it created reached
 * a region first. Region C's apply of the create fails for a while (a lock held on its table, with a short
 * lock_timeout: a retryable failure, so the entry stays pending and is claimed again); meanwhile the
 * credential is PATCHed in B, which holds it, and C applies that PATCH at once. When C applies the create
 * again, its row already is a later state of that very create: the create is held, not superseded, and the
 * waiting client gets its 201 (it got 409 "not kept", and a retry made a second credential).
 *
 * Once C applied the later change, its pending create is marked idle (hurryClaims) so that its applier takes
 * it again within ~5 s, not past its 15 s idle bound: ~21 s a case before, ~5 s after (the file: 72 s -> 23 s).
 */
import { Client } from 'pg';
import { adminHeaders, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { hurryClaims } from '../support/hurry-claims';

const PATH = '/organizations/sso/saml/provider-credentials';
const [A, B, C] = ['us-iowa', 'europe-belgium', 'asia-japan'] as const;
let cluster: Cluster;
let idp: IdpServer;
let org: { id: string; api_key: string };

beforeAll(async () => {
  idp = await startIdpServer();
  cluster = await startCluster('create-held', [A, B, C], {
    extra: { metadataAllowedHosts: [idp.hostPort] },
    regionEnv: { [C]: { PGOPTIONS: '-c lock_timeout=1500' } },
  });
  org = await createOrg(cluster.url(A), 'acme', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
});

test.each([
  ['update', 'PATCH'],
  ['deletion (of every row the create made, the credential and its metadata)', 'DELETE'],
])('an all_regions create whose own later %s reached a region first is answered 201', async (_what, method) => {
  const locker = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === C)?.databaseUrl });
  await locker.connect();
  let locked = true;
  let hurry: { stop(): Promise<void> } | undefined;
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE saml_provider_credentials IN SHARE MODE');
    // The credentials already there (an earlier case's).
    const before = new Set((((await call(cluster.url(A), 'GET', PATH, { headers: slashidHeaders(org) })).body?.result ?? []) as { id: string }[]).map((c) => c.id));
    const creating = call(cluster.url(A), 'POST', PATH, {
      body: { idp_metadata_url: idp.url('okta.xml'), label: 'original' },
      headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '90' }),
      timeoutMs: 100_000,
    });
    let id = '';
    expect(await eventually(async () => {
      const listed = ((await call(cluster.url(B), 'GET', PATH, { headers: slashidHeaders(org) })).body?.result ?? []) as { id: string }[];
      id = listed.find((c) => !before.has(c.id))?.id ?? '';
      return id !== '';
    }, 20_000)).toBe(true);
    // C's first apply of the create waits on the lock and times out; then the lock goes.
    await new Promise((r) => setTimeout(r, 3000));
    await locker.query('ROLLBACK');
    locked = false;
    // The credential is PATCHed (or deleted) where it is held; C applies that before it claims the create again.
    const later = await call(cluster.url(B), method, `${PATH}/${id}`, { ...(method === 'PATCH' ? { body: { label: 'patched' } } : {}), headers: slashidHeaders(org) });
    expect(later.status).toBe(204);
    // Once C applied it, C's applier may take the create again at once rather than after its 15 s idle bound.
    const laterApplied = async () =>
      (await call(cluster.url(B), 'GET', `/admin/replication/changes/${later.headers.get('x-change-id')}`, { headers: adminHeaders })).body?.applied_at?.[C] != null;
    expect(await eventually(laterApplied, 20_000)).toBe(true);
    hurry = hurryClaims(cluster, C);
    const res = await creating;
    expect({ status: res.status, body: res.status === 201 ? null : res.body }).toEqual({ status: 201, body: null });
    // C's judgement of every row of the create holds, and so does its status (an idempotent replay reads it).
    for (const r of [A, B, C]) {
      const done = async () => {
        const got = await call(cluster.url(r), 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
        return method === 'PATCH' ? got.body?.result?.label === 'patched' : got.status === 404;
      };
      expect(await eventually(done, 20_000)).toBe(true);
    }
    const status = await call(cluster.url(A), 'GET', `/admin/replication/changes/${res.headers.get('x-change-id')}`, { headers: adminHeaders });
    expect(status.body).toMatchObject({ complete: true, superseded: [] });
  } finally {
    if (locked) await locker.query('ROLLBACK').catch(() => undefined);
    await hurry?.stop();
    await locker.end();
  }
}, 150_000);
