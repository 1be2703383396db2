/**
 * The owner's pins survive a refresh in the home region that wins over a PATCH made in another region at
 * the same moment (trust.ts, TrustSetting). Two regions, each with its own database and HTTP port, against
 * one Redis, both in the test process: the home region's applier is stopped while the other region takes the
 * PATCH, so that the home region's refresh is written without it and with a later stamp (the race, made
 * certain); the region then starts again and applies the PATCH. Last writer wins keeps the refresh's
 * metadata row everywhere, the owner's setting only in the credential row: the home region must find that
 * and fetch again under the owner's pins, which before were lost (trust on first use of whatever the URL
 * served then).
 */
import { createLogger } from '../../src/logger';
import { MetadataRefresher } from '../../src/provider-credentials/metadata-refresh';
import { startRegion, type RunningRegion } from '../../src/region';
import { signRoot } from '../../bench/metadata-documents';
import { parseCertificate } from '../../src/metadata';
import { call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { createDeployment, type TestDeployment } from '../support/env';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { idpMetadata, signer, type Signer } from '../sso/support/idp-simulator';

// A region whose clock runs ahead (within the 60 s the replication admits) makes UUIDv7s ahead: the test's
// ids are made with explicit times, shifted by mockSkewMs (regions are processes of their own in production,
// with no shared monotonic state).
let mockSkewMs = 0;
jest.mock('uuid', () => {
  const real = jest.requireActual<typeof import('uuid')>('uuid');
  return { ...real, v7: (...args: Parameters<typeof real.v7>) => (args.length ? real.v7(...args) : real.v7({ msecs: Date.now() + mockSkewMs })) };
});

const PATH = '/organizations/sso/saml/provider-credentials';
const HOME = 'us-iowa';
const OTHER = 'europe-belgium';
const K1 = signer('idp-a');
const K2 = signer('idp-b');
const fp = (s: Signer) => parseCertificate(s.cert).fingerprintSha256;

let idp: IdpServer;
let deployment: TestDeployment;
let home: RunningRegion;
let other: RunningRegion;
let org: { id: string; api_key: string };

const start = (region: string) => startRegion(deployment.configFor(region), { port: 0, drainTimeoutMs: 5000 });

beforeAll(async () => {
  idp = await startIdpServer();
  deployment = await createDeployment('trustrace', [HOME, OTHER], { metadataAllowedHosts: [idp.hostPort], metadataRefreshIntervalSeconds: 3600 });
  home = await start(HOME);
  other = await start(OTHER);
  org = await createOrg(home.url, 'trust-race');
  expect(await eventually(async () => (await call(other.url, 'GET', PATH, { headers: slashidHeaders(org) })).status === 200)).toBe(true);
});

afterAll(async () => {
  await home?.stop();
  await other?.stop();
  await deployment?.cleanup();
  await idp?.close();
});

function doc(certs: Signer[], by: Signer | null): string {
  const xml = idpMetadata({ entityId: 'https://idp.race.test/saml', ssoUrl: `http://${idp.hostPort}/sso`, certs }).replace('<md:EntityDescriptor ', '<md:EntityDescriptor ID="_md" ');
  return by ? signRoot(xml, by) : xml;
}

const refresherOf = (r: RunningRegion) =>
  new MetadataRefresher({ db: r.db, repl: r.replication.repl, redis: r.replication.redis, config: deployment.configFor(HOME), log: createLogger({ level: 'silent' }) });

const metadataRow = async (r: RunningRegion, id: string) => r.db.samlCredentialMetadata.findUnique({ where: { credentialId: id } });
const credentialUrl = async (r: RunningRegion, id: string) => (await r.db.samlProviderCredential.findUnique({ where: { id } }))?.idpMetadataUrl;
const trusted = async (r: RunningRegion, id: string) => {
  const res = await call(r.url, 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(org) });
  return res.status === 200 && res.body.result.metadata
    ? (res.body.result.trusted_certificates as { fingerprint_sha256: string; source: string }[]).map((c) => `${c.fingerprint_sha256}:${c.source}`)
    : null;
};

/**
 * Runs `patch` in the other region while the home region does not apply, then a refresh in the home region
 * of what the IdP serves now (`served`: a changed document, so the refresh writes); starts the home region again and waits until
 * the home region applied the PATCH and both regions hold the refresh's metadata row: the race as last
 * writer wins leaves it.
 */
async function race(id: string, patch: () => Promise<void>, served: { file: string; xml: string }): Promise<void> {
  await home.replication.applier?.stop();
  await patch();
  const patched = (await metadataRow(other, id))?.version;
  idp.set(served.file, served.xml);
  await home.db.$executeRawUnsafe(`UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute' WHERE credential_id = $1::uuid`, id);
  const before = (await metadataRow(home, id))?.version;
  await refresherOf(home).runOnce();
  const won = (await metadataRow(home, id))?.version;
  expect(won).not.toBe(before);
  // Written after the PATCH: its stamp is the later one.
  expect(String(won) > String(patched)).toBe(true);
  await home.stop();
  home = await start(HOME);
  const credential = async (r: RunningRegion) => (await r.db.samlProviderCredential.findUnique({ where: { id } }))?.version;
  const patchedCredential = await credential(other);
  expect(await eventually(async () => (await credential(home)) === patchedCredential, 20_000)).toBe(true);
  expect(await eventually(async () => (await metadataRow(other, id))?.version === won && (await metadataRow(home, id))?.version === won, 20_000)).toBe(true);
}

/** A credential created in the home region from `file` (served as `xml`), replicated everywhere; its id. */
async function createdAtHome(file: string, xml: string): Promise<string> {
  idp.set(file, xml);
  const created = await call(home.url, 'POST', PATH, {
    body: { idp_metadata_url: idp.url(file) },
    headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions' }),
  });
  expect(created.status).toBe(201);
  return created.body.result.id as string;
}

/** The owner pins K2 alone, in the other region. */
async function pinK2(id: string): Promise<void> {
  const res = await call(other.url, 'PATCH', `${PATH}/${id}`, { body: { idp_trusted_certificates: [K2.cert] }, headers: slashidHeaders(org) });
  expect(res.status).toBe(204);
}

const ONLY_K2 = () => [`${fp(K2)}:caller`];

/** Until both regions trust the owner's K2 alone, the home region's sweep running meanwhile. */
async function expectOnlyK2Everywhere(id: string): Promise<void> {
  const refresher = refresherOf(home);
  for (const r of [home, other]) {
    expect(await eventually(async () => {
      if (r === home) await refresher.runOnce();
      return JSON.stringify(await trusted(r, id)) === JSON.stringify(ONLY_K2());
    }, 20_000)).toBe(true);
  }
}

test('a new URL with pins set in another region, raced by a refresh of the old URL in the home region: fetched again under the pins', async () => {
  idp.set('two.xml', doc([K2], null));
  const id = await createdAtHome('one.xml', doc([K1], null));

  await race(id, async () => {
    const res = await call(other.url, 'PATCH', `${PATH}/${id}`, {
      body: { idp_metadata_url: idp.url('two.xml'), idp_trusted_certificates: [K2.cert] },
      headers: slashidHeaders(org),
    });
    expect(res.status).toBe(204);
    expect(await trusted(other, id)).toEqual(ONLY_K2());
  }, { file: 'one.xml', xml: doc([K1, K2], K1) });
  // The PATCH's credential row, the refresh's metadata row: the home region has the PATCH applied now.
  expect(await credentialUrl(home, id)).toBe(idp.url('two.xml'));
  expect((await metadataRow(home, id))?.idpMetadataUrl).toBe(idp.url('one.xml'));

  // The home region's sweep finds the other URL's document and fetches two.xml under the owner's pins.
  const refresher = refresherOf(home);
  expect(await eventually(async () => {
    await refresher.runOnce();
    return (await metadataRow(home, id))?.idpMetadataUrl === idp.url('two.xml');
  }, 20_000)).toBe(true);
  await expectOnlyK2Everywhere(id);
});

test('new pins alone set in another region (dropping a certificate), raced by a refresh in the home region: the dropped one is not trusted again', async () => {
  // Trusted on first use: K1. The IdP then rotates to K2, vouched for by K1's signature.
  const id = await createdAtHome('pins.xml', doc([K1], null));
  idp.set('pins.xml', doc([K2], K1));

  // The owner pins K2 alone in the other region (K1 is to be trusted no more); the home region's refresh of
  // the same document, judged by the old trust, applies the signed rotation and keeps K1 trusted.
  await race(id, () => pinK2(id), { file: 'pins.xml', xml: doc([K2], K1) });
  const stale = ((await metadataRow(home, id))?.metadata as { trusted_certificates: { fingerprint_sha256: string }[] }).trusted_certificates;
  expect(stale.map((c) => c.fingerprint_sha256)).toContain(fp(K1));
  // Until the home region fetched again, neither region serves the refresh's record as the credential's.
  expect(await trusted(other, id)).toBeNull();

  await expectOnlyK2Everywhere(id);
});

test('new pins set in another region, raced by a PATCH of the label in the home region: the pins stay, no region stops serving the credential', async () => {
  // The label's write carries the credential row with the setting it read (the older one) and wins that row;
  // the pins' metadata row stays: made under a newer setting than the credential row names, it is current.
  const id = await createdAtHome('label.xml', doc([K1], null));
  idp.set('label.xml', doc([K2], K1));
  await home.replication.applier?.stop();
  await pinK2(id);
  const labelled = await call(home.url, 'PATCH', `${PATH}/${id}`, { body: { label: 'renamed' }, headers: slashidHeaders(org) });
  expect(labelled.status).toBe(204);
  await home.stop();
  home = await start(HOME);
  const credential = async (r: RunningRegion) => r.db.samlProviderCredential.findUnique({ where: { id } });
  expect(await eventually(async () => (await credential(home))?.version === (await credential(other))?.version
    && (await metadataRow(home, id))?.version === (await metadataRow(other, id))?.version, 20_000)).toBe(true);
  // The label won the credential row (with the setting it read), the pins the metadata row.
  expect((await credential(other))?.label).toBe('renamed');
  const setting = (await credential(other))?.idpTrust as { id: string };
  expect(String((await metadataRow(other, id))?.trustId) > setting.id).toBe(true);
  for (const r of [home, other]) expect(await trusted(r, id)).toEqual(ONLY_K2());
  // Nor does the home region's sweep fetch it again under the older setting.
  const before = (await metadataRow(home, id))?.version;
  await refresherOf(home).runOnce();
  expect((await metadataRow(home, id))?.version).toBe(before);
  for (const r of [home, other]) expect(await trusted(r, id)).toEqual(ONLY_K2());
});

test('a credential written by an older version (no trust setting): new pins set in another region and raced by a refresh are not lost', async () => {
  const id = await createdAtHome('legacy.xml', doc([K1], null));
  // As an older version left it in both regions: no setting, no trust id.
  for (const r of [home, other]) {
    await r.db.$executeRawUnsafe('UPDATE saml_provider_credentials SET idp_trust = NULL WHERE id = $1::uuid', id);
    await r.db.$executeRawUnsafe('UPDATE saml_credential_metadata SET trust_id = NULL WHERE credential_id = $1::uuid', id);
  }
  idp.set('legacy.xml', doc([K2], K1));
  await race(id, () => pinK2(id), { file: 'legacy.xml', xml: doc([K2], K1) });
  // The refresh, judged without a setting, says so ('' sorts before every setting id): not the credential's.
  expect((await metadataRow(home, id))?.trustId).toBe('');
  await expectOnlyK2Everywhere(id);
});

test("a setting made where the clock runs 30 s ahead is still replaced by a later one made elsewhere: the owner's new pins are not lost to a refresh", async () => {
  mockSkewMs = 30_000;
  const id = await createdAtHome('skew.xml', doc([K1], null)).finally(() => (mockSkewMs = 0));
  idp.set('skew.xml', doc([K2], K1));
  await race(id, () => pinK2(id), { file: 'skew.xml', xml: doc([K2], K1) });
  // The later setting sorts after the earlier one although its region's clock is 30 s behind.
  const setting = ((await other.db.samlProviderCredential.findUnique({ where: { id } }))?.idpTrust as { id: string }).id;
  expect(String((await metadataRow(other, id))?.trustId) < setting).toBe(true);
  await expectOnlyK2Everywhere(id);
});

test("new pins set after a label race left the metadata row's setting ahead of the credential's (a clock 30 s ahead made it) sort after both: a refresh racing them does not keep the older pins", async () => {
  // The label race of the test above, the pins (K2) made where the clock runs 30 s ahead: the credential row
  // keeps the first setting, the metadata row the pins' setting, which sorts 30 s ahead of this clock.
  const id = await createdAtHome('ahead.xml', doc([K1], null));
  idp.set('ahead.xml', doc([K2], K1));
  await home.replication.applier?.stop();
  mockSkewMs = 30_000;
  await pinK2(id).finally(() => (mockSkewMs = 0));
  expect((await call(home.url, 'PATCH', `${PATH}/${id}`, { body: { label: 'ahead' }, headers: slashidHeaders(org) })).status).toBe(204);
  await home.stop();
  home = await start(HOME);
  const credential = async (r: RunningRegion) => r.db.samlProviderCredential.findUnique({ where: { id } });
  expect(await eventually(async () => (await credential(home))?.version === (await credential(other))?.version
    && (await metadataRow(home, id))?.version === (await metadataRow(other, id))?.version, 20_000)).toBe(true);
  const ahead = String((await metadataRow(other, id))?.trustId);
  expect(ahead > ((await credential(other))?.idpTrust as { id: string }).id).toBe(true);

  // The owner now pins K1 alone in the other region (its clock right), raced by a refresh in the home region
  // that keeps the metadata row's setting (K2's) and holds what the IdP serves then.
  await race(id, async () => {
    const res = await call(other.url, 'PATCH', `${PATH}/${id}`, { body: { idp_trusted_certificates: [K1.cert] }, headers: slashidHeaders(org) });
    expect(res.status).toBe(204);
  }, { file: 'ahead.xml', xml: doc([K1, K2], K1) });
  // The home region fetches again under the owner's K1, and every region trusts K1 alone.
  const refresher = refresherOf(home);
  for (const r of [home, other]) {
    expect(await eventually(async () => {
      if (r === home) await refresher.runOnce();
      return JSON.stringify(await trusted(r, id)) === JSON.stringify([`${fp(K1)}:caller`]);
    }, 20_000)).toBe(true);
  }
  // The new setting sorts after the one the refresh's row was made under, which was therefore not the credential's.
  expect(((await credential(other))?.idpTrust as { id: string }).id > ahead).toBe(true);
});
