/**
 * The Infisical API across three region processes: consistency headers, 408 with a paused region,
 * reads in every region, and one config per org even when two regions accept a create at once.
 */
import { samlConfigId } from '../../src/infisical/service';
import { call, createOrg, eventually, startCluster, type Cluster } from '../support/harness';
import { bearer, configBody, issueToken, makeCerts, SSO, type TestCerts } from './support/fixtures';
import { expectSeedShape, validatorFor } from './support/seed-schemas';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions' };

let cluster: Cluster;
let certs: TestCerts;

beforeAll(async () => {
  certs = makeCerts();
  cluster = await startCluster('infisical-x', REGIONS);
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
});

/** An org that exists in every region, and a token issued by one region. */
async function newOrg() {
  const org = await createOrg(cluster.url('us-iowa'), 'acme', { headers: ALL });
  return { id: org.id, token: await issueToken(cluster.url('europe-belgium'), org.id) };
}

async function api(region: string, method: string, path: string, token: string, opts: { body?: unknown; headers?: Record<string, string> } = {}) {
  const res = await call(cluster.url(region), method, path, { body: opts.body, headers: bearer(token, opts.headers) });
  expectSeedShape(method, res);
  return res;
}

const getIn = (region: string, org: { id: string; token: string }) => api(region, 'GET', `${SSO}?organizationId=${org.id}`, org.token);

test('an all_regions create is readable in every region as soon as it is answered, with a token from another region', async () => {
  const org = await newOrg();
  const created = await api('asia-japan', 'POST', SSO, org.token, { body: configBody(org.id, certs.pem), headers: ALL });
  expect(created.status).toBe(200);
  for (const r of REGIONS) {
    const got = await getIn(r, org);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ ...created.body, cert: certs.pem.trim() });
  }
});

test('an all_regions PATCH is readable in every region as soon as it is answered', async () => {
  const org = await newOrg();
  await api('us-iowa', 'POST', SSO, org.token, { body: configBody(org.id, certs.pem), headers: ALL });
  const patched = await api('europe-belgium', 'PATCH', SSO, org.token, { body: { organizationId: org.id, issuer: 'patched', isActive: false }, headers: ALL });
  expect(patched.status).toBe(200);
  for (const r of REGIONS) {
    expect((await getIn(r, org)).body).toMatchObject({ issuer: 'patched', isActive: false, updatedAt: patched.body.updatedAt });
  }
});

test('a create in another region after the first one replicated is a 409', async () => {
  const org = await newOrg();
  await api('us-iowa', 'POST', SSO, org.token, { body: configBody(org.id, certs.pem), headers: ALL });
  const second = await api('asia-japan', 'POST', SSO, org.token, { body: configBody(org.id, certs.otherPem) });
  expect(second.status).toBe(409);
  expect(second.body.error).toBe('Conflict');
});

test('answers 408 with the written config in details when a region is paused, and the write still lands everywhere', async () => {
  const org = await newOrg();
  const japan = cluster.proc('asia-japan');
  japan.pause();
  try {
    const started = Date.now();
    const created = await api('us-iowa', 'POST', SSO, org.token, {
      body: configBody(org.id, certs.pem),
      headers: { ...ALL, 'SlashID-Required-Consistency-Timeout': '2' },
    });
    expect(created.status).toBe(408);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    expect(created.body).toMatchObject({ statusCode: 408, error: 'RequestTimeout', message: expect.stringContaining('asia-japan') });
    expect(validatorFor('POST', 200)(created.body.details)).toBe(true);
    expect(created.body.details).toMatchObject({ id: samlConfigId(org.id), orgId: org.id });

    // Not cancelled: readable where it was written and in the other running region.
    expect((await getIn('us-iowa', org)).status).toBe(200);
    expect(await eventually(async () => (await getIn('europe-belgium', org)).status === 200)).toBe(true);

    const patched = await api('europe-belgium', 'PATCH', SSO, org.token, {
      body: { organizationId: org.id, entryPoint: 'https://idp.example.com/after-408' },
      headers: { ...ALL, 'SlashID-Required-Consistency-Timeout': '1' },
    });
    expect(patched.status).toBe(408);
    expect(validatorFor('POST', 200)(patched.body.details)).toBe(true);
  } finally {
    japan.resume();
  }
  expect(await eventually(async () => (await getIn('asia-japan', org)).body?.entryPoint === 'https://idp.example.com/after-408')).toBe(true);
});

test('two regions that accept a create for the same org at the same moment converge on one config everywhere', async () => {
  const orgs = await Promise.all([newOrg(), newOrg(), newOrg(), newOrg()]);
  let bothAccepted = 0;
  for (const org of orgs) {
    const [iowa, belgium] = await Promise.all([
      api('us-iowa', 'POST', SSO, org.token, { body: configBody(org.id, certs.pem, { issuer: 'from-iowa' }) }),
      api('europe-belgium', 'POST', SSO, org.token, { body: configBody(org.id, certs.otherPem, { issuer: 'from-belgium' }) }),
    ]);
    if (iowa.status === 200 && belgium.status === 200) bothAccepted += 1;
    // Both may be accepted (neither saw the other yet), or the later one sees the first: never two 409s.
    expect([iowa.status, belgium.status]).toContain(200);
    for (const res of [iowa, belgium]) {
      expect([200, 409]).toContain(res.status);
      if (res.status === 200) expect(res.body.id).toBe(samlConfigId(org.id));
    }
    const converged = await eventually(async () => {
      const bodies = await Promise.all(REGIONS.map((r) => getIn(r, org)));
      return bodies.every((b) => b.status === 200 && JSON.stringify(b.body) === JSON.stringify(bodies[0]?.body));
    });
    expect(converged).toBe(true);
    const final = await getIn('asia-japan', org);
    expect(final.body.id).toBe(samlConfigId(org.id));
    expect(['from-iowa', 'from-belgium']).toContain(final.body.issuer);
    // The winner carries its own certificate: rows are replaced whole, never mixed.
    expect(final.body.cert).toBe(final.body.issuer === 'from-iowa' ? certs.pem.trim() : certs.otherPem.trim());
  }
  // Make sure the race was really run: replication takes a stream round trip, a local commit does not.
  expect(bothAccepted).toBeGreaterThan(0);
});
