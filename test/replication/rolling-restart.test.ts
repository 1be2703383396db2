/**
 * Graceful shutdown: SIGTERM stops accepting, finishes in-flight requests, flushes the outbox and exits.
 * A rolling restart of every region under load answers no 5xx and loses no acknowledged write.
 */
import { adminHeaders, call, createOrg, eventually, locatedId, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';

const PATH = '/organizations/sso/saml/provider-credentials';
const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
let cluster: Cluster;
let idp: IdpServer;
let org: { id: string; api_key: string };

beforeAll(async () => {
  idp = await startIdpServer();
  // The load of the first test creates more credentials than the default per-org quota (100) allows.
  cluster = await startCluster('rolling', REGIONS, { extra: { metadataAllowedHosts: [idp.hostPort], maxCredentialsPerOrg: 10_000 } });
  org = await createOrg(cluster.url('us-iowa'), 'acme', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
});

test('a rolling restart of all regions under load answers no 5xx and loses nothing', async () => {
  const acked: string[] = [];
  const fiveXX: string[] = [];
  let refused = 0;
  let running = true;
  const client = async (n: number) => {
    for (let i = 0; running; i++) {
      const region = REGIONS[(n + i) % REGIONS.length] ?? 'us-iowa';
      try {
        const res = await call(cluster.url(region), 'POST', PATH, {
          body: { idp_metadata_url: idp.url('okta.xml'), label: `c${n}-${i}` },
          headers: slashidHeaders(org, i % 5 === 0 ? { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '3' } : {}),
          timeoutMs: 10_000,
        });
        if (res.status === 201) acked.push(res.body.result.id);
        // A 408 of a create that committed names the credential in Location (SlashID errors have no result).
        else if (res.status === 408 && res.headers.get('location')) acked.push(locatedId(res));
        else if (res.status >= 500) fiveXX.push(`${region} ${res.status} ${JSON.stringify(res.body)}`);
      } catch {
        refused += 1; // the region is restarting: not acknowledged, the client moves on
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const clients = Array.from({ length: 6 }, (_, n) => client(n));
  await new Promise((r) => setTimeout(r, 500));
  for (const region of REGIONS) {
    const p = cluster.proc(region);
    await p.stop(); // SIGTERM, graceful
    p.start();
    await p.waitReady();
    await new Promise((r) => setTimeout(r, 300));
  }
  running = false;
  await Promise.all(clients);

  expect(fiveXX).toEqual([]);
  expect(acked.length).toBeGreaterThan(50);
  const everywhere = async () => {
    for (const r of REGIONS) {
      const ids = new Set<string>();
      for (let offset = 0; ; offset += 200) {
        const page = await call(cluster.url(r), 'GET', `${PATH}?limit=200&offset=${offset}`, { headers: slashidHeaders(org) });
        for (const c of page.body.result as { id: string }[]) ids.add(c.id);
        if (page.body.result.length < 200) break;
      }
      if (!acked.every((id) => ids.has(id))) return false;
    }
    return true;
  };
  expect(await eventually(everywhere, 30_000, 500)).toBe(true);
  void refused;
}, 120_000);

test('SIGTERM lets a request that is waiting for all_regions answer before the process exits', async () => {
  const paused = cluster.proc('asia-japan');
  paused.pause();
  try {
    const pending = call(cluster.url('us-iowa'), 'POST', PATH, {
      body: { idp_metadata_url: idp.url('okta.xml'), label: 'in flight at shutdown' },
      headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '2' }),
    });
    await new Promise((r) => setTimeout(r, 300));
    const stopping = cluster.proc('us-iowa').stop();
    const res = await pending;
    expect(res.status).toBe(408);
    const id = locatedId(res);
    await stopping;
    expect(cluster.proc('us-iowa').running).toBe(false);
    cluster.proc('us-iowa').start();
    await cluster.proc('us-iowa').waitReady();
    paused.resume();
    const there = async () => (await call(cluster.url('asia-japan'), 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).status === 200;
    expect(await eventually(there)).toBe(true);
  } finally {
    paused.resume();
  }
  const status = await call(cluster.url('us-iowa'), 'GET', '/admin/replication', { headers: adminHeaders });
  expect(status.status).toBe(200);
}, 60_000);
