/**
 * Signatures that mean something (issue H, item 3), through a region with a test IdP whose document changes
 * between fetches: a metadata signature counts only when made with a certificate trusted for the credential
 * (pinned on first use or supplied by the owner). A refresh that brings in an untrusted signing certificate
 * without a trusted signature is held: shown to the owner and operators, never used by SSO, until accepted.
 * Over many refreshes: an IdP that rotates its signing certificate again and again (each new one signed by the
 * last) keeps the newest 10 trusted, not the first ones pinned; one that serves an untrusted document (held)
 * and then goes back to the trusted one clears the held document.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { signRoot } from '../../bench/metadata-documents';
import { parseCertificate } from '../../src/metadata';
import type { MetadataRefresher } from '../../src/provider-credentials/metadata-refresh';
import { MAX_TRUSTED_CERTIFICATES } from '../../src/provider-credentials/trust';
import { adminHeaders, call, slashidHeaders } from '../support/harness';
import type { IdpServer } from '../support/idp-server';
import type { InProcessRegion } from '../support/in-process';
import { useRefreshRig } from '../support/refresh-rig';
import { b64, idpMetadata, requestFromRedirect, signedResponse, signer, type Signer } from '../sso/support/idp-simulator';

const execFileAsync = promisify(execFile);
const PATH = '/organizations/sso/saml/provider-credentials';
const ENTITY = 'https://idp.trust.test/saml';
const A = signer('idp-a');
const B = signer('idp-b');
const STRANGER = signer('stranger');
const fp = (s: Signer) => parseCertificate(s.cert).fingerprintSha256;
/** A PEM certificate's DER as bare base64 on one line (another wrapping of the same certificate). */
const bareBase64 = (pem: string) => pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');

let r: InProcessRegion;
let idp: IdpServer;
let org: { id: string; api_key: string };
let refresher: MetadataRefresher;
const rig = useRefreshRig('trust', { metadataRefreshIntervalSeconds: 3600 });
beforeAll(() => ({ r, idp, org, refresher } = rig));

/** IdP metadata listing `certs`, signed over its root by `by` (its certificate in the KeyInfo), or unsigned. */
function doc(certs: Signer[], by: Signer | null, sso = `http://${idp.hostPort}/sso`): string {
  const xml = idpMetadata({ entityId: ENTITY, ssoUrl: sso, certs }).replace('<md:EntityDescriptor ', '<md:EntityDescriptor ID="_md" ');
  return by ? signRoot(xml, by) : xml;
}

const create = (file: string, extra: object = {}) =>
  call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url(file), ...extra }, headers: slashidHeaders(org) });
const resource = async (id: string) => (await call(r.url, 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(org) })).body.result;
/** What SSO reads: the applied document's signing certificates in the replicated row. */
const ssoCertificates = async (id: string) => {
  const rows = await r.region.db.$queryRawUnsafe<{ fps: string[] }[]>(
    `SELECT array(SELECT c->>'fingerprint_sha256' FROM jsonb_array_elements(metadata->'signing_certificates') c) AS fps FROM saml_credential_metadata WHERE credential_id = $1::uuid`,
    id,
  );
  return rows[0]?.fps ?? [];
};
/** A sign-in at the region answered with a response whose assertion `by` signed: the ACS status. */
async function signIn(id: string, by: Signer): Promise<number> {
  const login = await fetch(`${r.url}/sso/saml/${id}/login`, { redirect: 'manual' });
  expect(login.status).toBe(302);
  const req = requestFromRedirect(login.headers.get('location') ?? '');
  const xml = signedResponse({ issuer: ENTITY, audience: req.issuer, acs: req.acs, inResponseTo: req.id, nameId: 'alice@example.com', attributes: { email: ['alice@example.com'] } }, by);
  const res = await fetch(`${r.url}/sso/saml/${id}/acs`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ SAMLResponse: b64(xml) }),
  });
  await res.text();
  return res.status;
}
/**
 * Refreshes the credential now: while the organization's fetch slot is taken (a refresh still finishing),
 * this refresher passes the credential over (busy) and tries again; its refresh schedules the next one in the
 * future. (The rig's region has no refresher of its own.)
 */
async function refreshNow(id: string) {
  await r.region.db.$executeRawUnsafe(`UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute' WHERE credential_id = $1::uuid`, id);
  for (let attempt = 0; attempt < 50; attempt++) {
    await refresher.runOnce();
    const [state] = await r.region.db.$queryRawUnsafe<{ done: boolean }[]>('SELECT next_at > now() AS done FROM metadata_refresh_state WHERE credential_id = $1::uuid', id);
    if (state?.done) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`credential ${id} was not refreshed`);
}

/** A credential created from `first` (served as `name`), then refreshed once the IdP serves `then` instead. */
async function createdThenRefreshed(name: string, first: string, then: string): Promise<string> {
  idp.set(name, first);
  const created = await create(name);
  expect(created.status).toBe(201);
  const id = created.body.result.id as string;
  idp.set(name, then);
  await refreshNow(id);
  return id;
}

describe('trust on first use', () => {
  let id: string;
  test('the first document pins its signer and signing certificates', async () => {
    idp.set('tofu.xml', doc([A], A));
    const res = await create('tofu.xml', { email_claims: ['email'] });
    expect(res.status).toBe(201);
    id = res.body.result.id;
    const md = await resource(id);
    expect(md.metadata).toMatchObject({ signed: true, signed_by: fp(A) });
    expect(md.trusted_certificates).toEqual([expect.objectContaining({ fingerprint_sha256: fp(A), source: 'first_use' })]);
    expect(md.held_metadata).toBeNull();
  });

  test('a rotation signed by the pinned key is applied, and its new certificate becomes trusted', async () => {
    idp.set('tofu.xml', doc([B], A));
    await refreshNow(id);
    expect(await ssoCertificates(id)).toEqual([fp(B)]);
    const md = await resource(id);
    expect(md.held_metadata).toBeNull();
    expect(md.trusted_certificates.map((c: { fingerprint_sha256: string }) => c.fingerprint_sha256).sort()).toEqual([fp(A), fp(B)].sort());
  });

  test('an unsigned document naming another certificate is held; SSO keeps the trusted one', async () => {
    idp.set('tofu.xml', doc([STRANGER], null));
    await refreshNow(id);
    expect(await ssoCertificates(id)).toEqual([fp(B)]);
    const md = await resource(id);
    expect(md.metadata.signing_certificates.map((c: { fingerprint_sha256: string }) => c.fingerprint_sha256)).toEqual([fp(B)]);
    expect(md.held_metadata).toMatchObject({ reason: expect.stringMatching(/not signed by a trusted certificate/), metadata: { signed: false } });
    expect(md.held_metadata.metadata.signing_certificates[0].fingerprint_sha256).toBe(fp(STRANGER));

    // SSO: the held document's certificate signs nothing in; the applied one still does.
    expect(await signIn(id, STRANGER)).toBe(401);
    expect(await signIn(id, B)).toBe(200);

    const admin = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
    expect(admin.body.held).toBe(1);
    expect(admin.body.credentials).toContainEqual(expect.objectContaining({ credential_id: id, held_since: expect.any(String), held_reason: expect.any(String) }));
  });

  test('a document signed by a throwaway key naming its own certificate is held too', async () => {
    idp.set('tofu.xml', doc([STRANGER], STRANGER));
    await refreshNow(id);
    expect(await ssoCertificates(id)).toEqual([fp(B)]);
    const md = await resource(id);
    expect(md.held_metadata.metadata).toMatchObject({ signed: true, signed_by: fp(STRANGER) });
    expect(md.held_metadata.reason).toMatch(/signed by a certificate not trusted/);
  });

  test('a held document in a metadata row of an older trust setting is neither listed nor counted for operators (accept would refuse it)', async () => {
    // As a race leaves it until the home region's sweep fetches again (README, IdP metadata trust): the
    // row's trust id older than the credential's setting.
    const [{ trust_id: trustId }] = await r.region.db.$queryRawUnsafe<{ trust_id: string }[]>('SELECT trust_id FROM saml_credential_metadata WHERE credential_id = $1::uuid', id);
    await r.region.db.$executeRawUnsafe(`UPDATE saml_credential_metadata SET trust_id = '' WHERE credential_id = $1::uuid`, id);
    try {
      const admin = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
      expect(admin.body.held).toBe(0);
      expect(admin.body.credentials.filter((c: { credential_id: string }) => c.credential_id === id)).toEqual([expect.objectContaining({ held_since: null, held_reason: null })]);
      expect((await call(r.url, 'POST', `/admin/metadata-refresh/${id}/accept`, { headers: adminHeaders })).status).toBe(404);
    } finally {
      await r.region.db.$executeRawUnsafe('UPDATE saml_credential_metadata SET trust_id = $2 WHERE credential_id = $1::uuid', id, trustId);
    }
    expect((await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders })).body.held).toBe(1);
  });

  test('a metadata row of an older trust setting is not used to sign in: login and ACS answer 503 until the home region fetches again', async () => {
    // The owner re-pinned (dropped a certificate, say) and this region's row predates it: its certificates
    // are no longer the owner's choice.
    const started = await fetch(`${r.url}/sso/saml/${id}/login`, { redirect: 'manual' });
    expect(started.status).toBe(302);
    const req = requestFromRedirect(started.headers.get('location') ?? '');
    const [{ trust_id: trustId }] = await r.region.db.$queryRawUnsafe<{ trust_id: string }[]>('SELECT trust_id FROM saml_credential_metadata WHERE credential_id = $1::uuid', id);
    await r.region.db.$executeRawUnsafe(`UPDATE saml_credential_metadata SET trust_id = '' WHERE credential_id = $1::uuid`, id);
    try {
      const login = await fetch(`${r.url}/sso/saml/${id}/login`, { redirect: 'manual' });
      expect(login.status).toBe(503);
      expect(((await login.json()) as { errors: { message: string }[] }).errors[0]?.message).toMatch(/not available in this region yet/);
      const xml = signedResponse({ issuer: ENTITY, audience: req.issuer, acs: req.acs, inResponseTo: req.id, nameId: 'alice@example.com', attributes: { email: ['alice@example.com'] } }, B);
      const res = await fetch(`${r.url}/sso/saml/${id}/acs`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ SAMLResponse: b64(xml) }) });
      const body = (await res.json()) as { errors: { message: string }[]; token?: string };
      expect(res.status).toBe(503);
      expect(body.token).toBeUndefined();
    } finally {
      await r.region.db.$executeRawUnsafe('UPDATE saml_credential_metadata SET trust_id = $2 WHERE credential_id = $1::uuid', id, trustId);
    }
    expect(await signIn(id, B)).toBe(200);
  });

  test('fetching the same held document again writes nothing', async () => {
    const before = (await r.region.db.samlCredentialMetadata.findUnique({ where: { credentialId: id } }))?.version;
    await refreshNow(id); // the same held document
    expect((await r.region.db.samlCredentialMetadata.findUnique({ where: { credentialId: id } }))?.version).toBe(before);
  });

  test('an operator accepts the held document: applied, its certificate trusted; the consistency headers are a write\'s', async () => {
    // Before: the headers were ignored (a bad one applied the document) and no X-Change-Id was sent.
    const bad = await call(r.url, 'POST', `/admin/metadata-refresh/${id}/accept`, { headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'bogus' } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].message).toMatch(/SlashID-Required-Consistency/);
    expect((await resource(id)).held_metadata).not.toBeNull();
    const accepted = await call(r.url, 'POST', `/admin/metadata-refresh/${id}/accept`, { headers: { ...adminHeaders, 'SlashID-Required-Consistency': 'all_regions' } });
    expect(accepted.status).toBe(204);
    expect(accepted.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(await ssoCertificates(id)).toEqual([fp(STRANGER)]);
    expect(await signIn(id, STRANGER)).toBe(200);
    const md = await resource(id);
    expect(md.held_metadata).toBeNull();
    expect(md.trusted_certificates).toContainEqual(expect.objectContaining({ fingerprint_sha256: fp(STRANGER), source: 'operator' }));
    expect((await call(r.url, 'POST', `/admin/metadata-refresh/${id}/accept`, { headers: adminHeaders })).status).toBe(404);
    // What was trusted before the accept stays trusted: the IdP going back to B's document is applied, not held.
    expect(md.trusted_certificates.map((c: { fingerprint_sha256: string }) => c.fingerprint_sha256).sort()).toEqual([fp(A), fp(B), fp(STRANGER)].sort());
    idp.set('tofu.xml', doc([B], null));
    await refreshNow(id);
    expect(await ssoCertificates(id)).toEqual([fp(B)]);
    expect((await resource(id)).held_metadata).toBeNull();
  });
});

describe('certificates supplied by the owner', () => {
  test('create: the document must be signed by one of them, or list only them', async () => {
    idp.set('pinned.xml', doc([A], A));
    const refused = await create('pinned.xml', { idp_trusted_certificates: [B.cert] });
    expect(refused.status).toBe(400);
    expect(refused.body).toEqual({ meta: {}, errors: [{ httpcode: 400, message: expect.stringMatching(/not signed by any of idp_trusted_certificates/) }] });
    const bad = await create('pinned.xml', { idp_trusted_certificates: ['not a certificate'] });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].message).toMatch(/idp_trusted_certificates\.0 is not a readable/);

    // The same certificate twice, however its base64 is wrapped, is a 400 naming the repeat; nothing is written.
    const listed = async () => (await call(r.url, 'GET', PATH, { headers: slashidHeaders(org) })).body.result.length as number;
    const before = await listed();
    const twice = await create('pinned.xml', { idp_trusted_certificates: [B.cert, A.cert, bareBase64(B.cert)] });
    expect({ status: twice.status, body: twice.body }).toEqual({
      status: 400,
      body: { meta: {}, errors: [{ httpcode: 400, message: 'idp_trusted_certificates.2 is the same certificate as idp_trusted_certificates.0; list each certificate once.' }] },
    });
    expect(await listed()).toBe(before);

    idp.set('pinned.xml', doc([A], B)); // signed by the pinned B, naming A
    const ok = await create('pinned.xml', { idp_trusted_certificates: [B.cert] });
    expect(ok.status).toBe(201);
    const md = await resource(ok.body.result.id);
    expect(md.trusted_certificates).toEqual([expect.objectContaining({ fingerprint_sha256: fp(B), source: 'caller' })]);
    expect(ok.body.result).not.toHaveProperty('idp_trusted_certificates');
  });

  test('PATCH re-pinning is how the owner accepts a held document', async () => {
    idp.set('owner.xml', doc([A], null));
    const id = (await create('owner.xml')).body.result.id as string;
    idp.set('owner.xml', doc([B], STRANGER));
    await refreshNow(id);
    expect(await ssoCertificates(id)).toEqual([fp(A)]);
    expect((await resource(id)).held_metadata).not.toBeNull();

    // Pins that do not vouch for the document are refused; nothing changes.
    const wrong = await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { idp_trusted_certificates: [A.cert] }, headers: slashidHeaders(org) });
    expect(wrong.status).toBe(400);
    expect(await ssoCertificates(id)).toEqual([fp(A)]);

    // The same certificate twice (PEM, then its base64 on one line) is refused before any fetch; nothing changes.
    const twice = await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { idp_trusted_certificates: [STRANGER.cert, bareBase64(STRANGER.cert)] }, headers: slashidHeaders(org) });
    expect({ status: twice.status, body: twice.body }).toEqual({
      status: 400,
      body: { meta: {}, errors: [{ httpcode: 400, message: 'idp_trusted_certificates.1 is the same certificate as idp_trusted_certificates.0; list each certificate once.' }] },
    });
    expect(await ssoCertificates(id)).toEqual([fp(A)]);
    expect((await resource(id)).held_metadata).not.toBeNull();

    const res = await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { idp_trusted_certificates: [STRANGER.cert] }, headers: slashidHeaders(org) });
    expect(res.status).toBe(204);
    expect(await ssoCertificates(id)).toEqual([fp(B)]);
    const md = await resource(id);
    expect(md.held_metadata).toBeNull();
    expect(md.trusted_certificates).toEqual([expect.objectContaining({ fingerprint_sha256: fp(STRANGER), source: 'caller' })]);
  });
});

/**
 * `n` fresh signing keys and their self-signed certificates (openssl, as an IdP would make them). Not with
 * execFileSync: the region runs in this process, and a loop blocked for seconds made its keep-alive timers
 * close the test's idle connection under the next request (ECONNRESET, twice in a loaded run).
 */
async function makeSigners(n: number): Promise<Signer[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trust-rotations-'));
  try {
    return await Promise.all(Array.from({ length: n }, async (_, i) => {
      await execFileAsync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', `/CN=idp-key-${i}.rotations.test`, '-keyout', `k${i}.key`, '-out', `k${i}.pem`], { cwd: dir });
      return { name: `key-${i}`, key: fs.readFileSync(path.join(dir, `k${i}.key`), 'utf8'), cert: fs.readFileSync(path.join(dir, `k${i}.pem`), 'utf8') };
    }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const trustedFingerprints = async (id: string): Promise<string[]> =>
  ((await resource(id)).trusted_certificates as { fingerprint_sha256: string }[]).map((c) => c.fingerprint_sha256);

describe('many signed rotations', () => {
  let keys: Signer[];
  let newest: Signer;
  let id: string;
  beforeAll(async () => {
    // The first key, then one more per rotation: two more than the pins kept.
    keys = await makeSigners(MAX_TRUSTED_CERTIFICATES + 2);
    newest = keys[keys.length - 1] as Signer;
  });

  test('each rotation signed by the previous key is applied; afterwards the newest 10 certificates are trusted and the oldest dropped', async () => {
    idp.set('rotating.xml', doc([keys[0] as Signer], keys[0] as Signer));
    const res = await create('rotating.xml');
    expect(res.status).toBe(201);
    id = res.body.result.id;
    for (let i = 1; i < keys.length; i++) {
      idp.set('rotating.xml', doc([keys[i] as Signer], keys[i - 1] as Signer));
      await refreshNow(id);
      expect(await ssoCertificates(id)).toEqual([fp(keys[i] as Signer)]);
      expect((await resource(id)).held_metadata).toBeNull();
    }
    const trusted = await trustedFingerprints(id);
    expect(trusted).toHaveLength(MAX_TRUSTED_CERTIFICATES);
    expect([...trusted].sort()).toEqual(keys.slice(-MAX_TRUSTED_CERTIFICATES).map(fp).sort());
    expect(trusted).not.toContain(fp(keys[0] as Signer));
    expect(trusted).not.toContain(fp(keys[1] as Signer));
  });

  test('after them, an unsigned document listing only the newest certificates is applied, not held', async () => {
    const previous = keys[keys.length - 2] as Signer;
    idp.set('rotating.xml', doc([previous, newest], null));
    await refreshNow(id);
    expect((await resource(id)).held_metadata).toBeNull();
    expect(await ssoCertificates(id)).toEqual([fp(previous), fp(newest)]);
  });

  test('while one listing the first, dropped certificate is held', async () => {
    idp.set('rotating.xml', doc([keys[0] as Signer], null));
    await refreshNow(id);
    const held = (await resource(id)).held_metadata;
    expect(held).toMatchObject({ reason: expect.stringMatching(/not signed by a trusted certificate/) });
    expect(held.metadata.signing_certificates.map((c: { fingerprint_sha256: string }) => c.fingerprint_sha256)).toEqual([fp(keys[0] as Signer)]);
    expect(await ssoCertificates(id)).toEqual([fp(keys[keys.length - 2] as Signer), fp(newest)]);
  });
});

describe('an IdP that goes back to the trusted document', () => {
  test('the document it held meanwhile is cleared: no longer shown on the credential nor listed for operators', async () => {
    idp.set('back.xml', doc([A], A));
    const res = await create('back.xml');
    expect(res.status).toBe(201);
    const id = res.body.result.id as string;

    idp.set('back.xml', doc([B], STRANGER));
    await refreshNow(id);
    expect((await resource(id)).held_metadata).toMatchObject({ metadata: { signed_by: fp(STRANGER) } });
    const heldNow = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
    expect(heldNow.body.credentials).toContainEqual(expect.objectContaining({ credential_id: id, held_since: expect.any(String) }));

    idp.set('back.xml', doc([A], A)); // the very document already applied and trusted
    await refreshNow(id);
    const md = await resource(id);
    expect(md.held_metadata).toBeNull();
    expect(md.metadata).toMatchObject({ signed: true, signed_by: fp(A) });
    expect(md.trusted_certificates.map((c: { fingerprint_sha256: string }) => c.fingerprint_sha256)).toEqual([fp(A)]);
    expect(await ssoCertificates(id)).toEqual([fp(A)]);
    const admin = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
    expect(admin.body.credentials).toContainEqual(expect.objectContaining({ credential_id: id, held_since: null, held_reason: null }));
    // Nothing left to accept.
    expect((await call(r.url, 'POST', `/admin/metadata-refresh/${id}/accept`, { headers: adminHeaders })).status).toBe(404);
  });
});

describe('a document listing trusted certificates, alone or next to others', () => {
  test('unsigned, on refresh: held, the untrusted certificate signs nothing in', async () => {
    const id = await createdThenRefreshed('beside.xml', doc([A], null), doc([A, STRANGER], null));
    expect(await ssoCertificates(id)).toEqual([fp(A)]);
    const md = await resource(id);
    expect(md.trusted_certificates.map((c: { fingerprint_sha256: string }) => c.fingerprint_sha256)).toEqual([fp(A)]);
    expect(md.held_metadata).toMatchObject({ reason: expect.stringMatching(/not signed by a trusted certificate/), metadata: { signed: false } });
    expect(await signIn(id, STRANGER)).toBe(401);
    expect(await signIn(id, A)).toBe(200);
  });

  test("unsigned, at a create with the owner's certificates: refused, nothing written", async () => {
    idp.set('beside-pinned.xml', doc([A, STRANGER], null));
    const before = await r.region.db.samlProviderCredential.count();
    const res = await create('beside-pinned.xml', { idp_trusted_certificates: [A.cert] });
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toMatch(/not signed by any of idp_trusted_certificates/);
    expect(await r.region.db.samlProviderCredential.count()).toBe(before);
  });

  test("unsigned, listing only the owner's certificates, at a create: taken (the owner's certificates vouch for it)", async () => {
    idp.set('only-pinned.xml', doc([A], null));
    const res = await create('only-pinned.xml', { idp_trusted_certificates: [A.cert] });
    expect(res.status).toBe(201);
    const md = await resource(res.body.result.id);
    expect(md.trusted_certificates).toEqual([expect.objectContaining({ fingerprint_sha256: fp(A), source: 'caller' })]);
  });

  test('signed by the trusted certificate, on refresh: applied, and each certificate trusted once', async () => {
    const id = await createdThenRefreshed('rotation-beside.xml', doc([A], null), doc([A, B], A));
    expect((await ssoCertificates(id)).sort()).toEqual([fp(A), fp(B)].sort());
    const md = await resource(id);
    expect(md.held_metadata).toBeNull();
    expect(md.trusted_certificates.map((c: { fingerprint_sha256: string; source: string }) => `${c.fingerprint_sha256}:${c.source}`)).toEqual([
      `${fp(A)}:first_use`,
      `${fp(B)}:signed_refresh`,
    ]);
  });
});
