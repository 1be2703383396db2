/**
 * IdP metadata past its validUntil is not relied on at sign-in (SAML metadata 2.0, 2.2.1 and 4.3). The two regions
 * judge it by clocks two days apart (METADATA_VALIDATION_TIME): us-iowa, where the credentials are created and
 * refreshed, at the fixtures' date, europe-belgium two days later, so a document valid for one day is current in
 * one and expired in the other. In the home region a document whose refreshes keep failing is made to expire by
 * setting its stored validUntil in the past.
 */
import { Client } from 'pg';
import { adminHeaders, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { FIXTURE_DATE } from '../support/env';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { datedSigner, idpMetadata, signedResponse, signer, type ResponseSpec, type Signer } from './support/idp-simulator';
import { SET_VALID_UNTIL } from '../support/credential-rows';

const PATH = '/organizations/sso/saml/provider-credentials';
const US = 'us-iowa';
const EU = 'europe-belgium';
const ENTITY = 'https://idp.expiring.test/saml';
const A = signer('idp-a');
const at = (ms: number) => new Date(Date.parse(FIXTURE_DATE) + ms).toISOString();
const DAY = 24 * 3600_000;
/** europe-belgium's clock for metadata. */
const EU_TIME = at(2 * DAY);
const SKEW_SECONDS = 30;

let cluster: Cluster;
let idp: IdpServer;
let org: { id: string; api_key: string };

/** A credential of the IdP document served as `doc` (validUntil as given), created in us-iowa, IdP-initiated sign-in on. */
async function credential(doc: string, validUntil?: string, certs: Signer[] = [A]): Promise<string> {
  idp.set(doc, idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs, ...(validUntil ? { validUntil } : {}) }));
  const headers = slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions' });
  const res = await call(cluster.url(US), 'POST', PATH, { body: { idp_metadata_url: idp.url(doc), email_claims: ['email'] }, headers });
  if (res.status !== 201) throw new Error(`create credential: ${res.status} ${JSON.stringify(res.body)}`);
  const id = res.body.result.id as string;
  // IdP-initiated: a response can be posted without a login, which an expired credential refuses too.
  const on = await call(cluster.url(US), 'PATCH', `${PATH}/${id}/sso-settings`, { body: { allow_idp_initiated: true }, headers });
  expect(on.status).toBe(200);
  return id;
}

/** An IdP-initiated sign-in of alice at `region`'s ACS, signed by `by` (the IdP's current certificate). */
async function signIn(region: string, id: string, by: Signer = A) {
  const acs = `${cluster.url(region)}/sso/saml/${id}/acs`;
  const spec: ResponseSpec = { issuer: ENTITY, audience: `urn:saml-credential-service:sp:${id}`, acs, inResponseTo: null, nameId: 'alice@example.com', attributes: { email: ['alice@example.com'] } };
  const res = await fetch(acs, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ SAMLResponse: Buffer.from(signedResponse(spec, by)).toString('base64') }),
  });
  const body = (await res.json()) as { errors: { message: string }[]; token?: string };
  return { status: res.status, message: body.errors[0]?.message ?? '', token: body.token };
}

async function login(region: string, id: string) {
  const res = await fetch(`${cluster.url(region)}/sso/saml/${id}/login`, { redirect: 'manual' });
  return { status: res.status, message: res.status === 302 ? '' : ((await res.json()) as { errors: { message: string }[] }).errors[0]?.message ?? '' };
}

const metadataOf = async (region: string, id: string) => (await call(cluster.url(region), 'GET', `${PATH}/${id}/metadata`, { headers: slashidHeaders(org) })).body.result;

async function sql(region: string, text: string, values: unknown[]): Promise<void> {
  const db = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === region)?.databaseUrl });
  await db.connect();
  try {
    await db.query(text, values);
  } finally {
    await db.end();
  }
}

/**
 * `n` copies in us-iowa of credential `id` (its row, its metadata row with validUntil `validUntil`, a schedule not
 * due for a month and not failing), written to its database alone: the route reads them as any other, and
 * nothing refreshes or replicates them. Returns their ids; dropCopies removes them.
 */
async function copies(id: string, validUntils: string[]): Promise<string[]> {
  const db = new Client({ connectionString: cluster.deployment.file.regions.find((r) => r.id === US)?.databaseUrl });
  await db.connect();
  try {
    const res = await db.query<{ id: string }>(
      `WITH ids AS (SELECT gen_random_uuid() AS id, v.until, v.n FROM unnest($2::text[]) WITH ORDINALITY AS v(until, n)),
       credential AS (INSERT INTO saml_provider_credentials
         SELECT (jsonb_populate_record(NULL::saml_provider_credentials, to_jsonb(c) || jsonb_build_object('id', ids.id, 'label', 'copy ' || ids.n))).*
           FROM saml_provider_credentials c CROSS JOIN ids WHERE c.id = $1::uuid),
       metadata AS (INSERT INTO saml_credential_metadata
         SELECT (jsonb_populate_record(NULL::saml_credential_metadata, to_jsonb(m) || jsonb_build_object('credential_id', ids.id, 'metadata', jsonb_set(m.metadata, '{valid_until}', to_jsonb(ids.until))))).*
           FROM saml_credential_metadata m CROSS JOIN ids WHERE m.credential_id = $1::uuid)
       INSERT INTO metadata_refresh_state (credential_id, next_at, consecutive_failures) SELECT id, now() + interval '30 days', 0 FROM ids RETURNING credential_id AS id`,
      [id, validUntils],
    );
    return res.rows.map((r) => r.id);
  } finally {
    await db.end();
  }
}

async function dropCopies(ids: string[]): Promise<void> {
  for (const table of ['metadata_refresh_state', 'saml_credential_metadata']) await sql(US, `DELETE FROM ${table} WHERE credential_id = ANY($1::uuid[])`, [ids]);
  await sql(US, 'DELETE FROM saml_provider_credentials WHERE id = ANY($1::uuid[])', [ids]);
}

interface RefreshStatus {
  failing: number;
  expired: number;
  failing_expired: number;
  credentials: { credential_id: string; expired_since: string | null; consecutive_failures: number }[];
}
const refreshStatus = async () => {
  const res = await call<RefreshStatus>(cluster.url(US), 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
  expect(res.status).toBe(200);
  return res.body;
};
const listedExpired = (status: RefreshStatus) => status.credentials.filter((c) => c.expired_since !== null).length;

beforeAll(async () => {
  idp = await startIdpServer();
  cluster = await startCluster('md-expiry', [US, EU], {
    extra: { metadataAllowedHosts: [idp.hostPort], metadataRefreshIntervalSeconds: 1, samlClockSkewSeconds: SKEW_SECONDS },
    regionEnv: { [EU]: { METADATA_VALIDATION_TIME: EU_TIME } },
  });
  org = await createOrg(cluster.url(US), 'expiring');
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
  await idp?.close();
});

test('a sign-in where the metadata is past its validUntil is refused 409, saying when it expired and where it is refreshed; where it is not, it signs in', async () => {
  const until = at(DAY);
  const id = await credential('one-day.xml', until);
  expect((await signIn(US, id)).status).toBe(200);
  expect((await login(US, id)).status).toBe(302);

  const refused = await signIn(EU, id);
  expect(refused.status).toBe(409);
  expect(refused.token).toBeUndefined();
  expect(refused.message).toMatch(new RegExp(`^Sign-in refused: the IdP metadata of this credential expired at ${until} \\(its validUntil\\), and metadata past its validUntil is not relied on: `));
  // europe-belgium holds no schedule of it: it names the region that refreshes it, and the fix.
  expect(refused.message).toContain(`its refreshes run in region ${US}, whose GET ${PATH}/${id}/metadata says how they fail`);
  expect(refused.message).toContain("fix the credential's idp_metadata_url");
  expect(refused.message).toContain('or have the IdP publish fresh metadata there');
  const started = await login(EU, id);
  expect(started.status).toBe(409);
  expect(started.message).toMatch(new RegExp(`^Credential ${id} cannot be used to sign in: the IdP metadata of this credential expired at ${until} `));

  // The org's view of the document says so where it is expired, and only there.
  expect((await metadataOf(EU, id)).metadata).toMatchObject({ valid_until: until, expired: true });
  expect((await metadataOf(US, id)).metadata).toMatchObject({ valid_until: until, expired: false });
});

test('metadata within the clock skew of its validUntil, or without one, still signs in', async () => {
  const withinSkew = await credential('within-skew.xml', new Date(Date.parse(EU_TIME) - (SKEW_SECONDS - 10) * 1000).toISOString());
  const timeless = await credential('timeless.xml');
  for (const id of [withinSkew, timeless]) {
    expect({ id, ...(await signIn(EU, id)) }).toMatchObject({ id, status: 200 });
    expect((await login(EU, id)).status).toBe(302);
    expect((await metadataOf(EU, id)).metadata.expired).toBe(false);
  }
});

test("the IdP's certificates are judged by the metadata's clock (METADATA_VALIDATION_TIME), as its validUntil is, not by the real one", async () => {
  // Expires between the two regions' metadata clocks; by the real clock (after 2026-12-07) it has expired.
  const retiring = datedSigner('retiring-idp', '20260101000000Z', '20261124000000Z');
  const id = await credential('retiring.xml', undefined, [A, retiring]);
  // us-iowa judges at the fixtures' date, where it is current: it verifies the sign-in.
  expect(await signIn(US, id, retiring)).toMatchObject({ status: 200, token: expect.any(String) });
  // europe-belgium, two days later, where it has expired: refused, naming it.
  const refused = await signIn(EU, id, retiring);
  expect(refused.status).toBe(401);
  expect(refused.message).toContain('"retiring-idp", which expired on 2026-11-24');
  expect((await signIn(EU, id)).status).toBe(200);
  // The credential's /metadata says the same in each region.
  const expiredIn = async (region: string) => (await metadataOf(region, id)).metadata.signing_certificates.map((c: { expired: boolean }) => c.expired);
  expect(await expiredIn(US)).toEqual([false, false]);
  expect(await expiredIn(EU)).toEqual([false, true]);
});

test('in its home region, the refusal says since when its refreshes have failed; /metadata and /admin/metadata-refresh report it expired', async () => {
  const id = await credential('failing.xml', at(DAY));
  expect((await signIn(US, id)).status).toBe(200);
  // The IdP's metadata URL stops answering: every refresh fails from now on.
  idp.remove('failing.xml');
  expect(await eventually(async () => ((await metadataOf(US, id)).refresh.consecutive_failures ?? 0) > 0)).toBe(true);
  const { last_success_at: lastSuccess } = (await metadataOf(US, id)).refresh;
  // ... until the stored document's validUntil has passed.
  const expired = at(-3600_000);
  await sql(US, SET_VALID_UNTIL, [id, expired]);

  const refused = await signIn(US, id);
  expect(refused.status).toBe(409);
  expect(refused.message).toMatch(new RegExp(`^Sign-in refused: the IdP metadata of this credential expired at ${expired} \\(its validUntil\\)`));
  expect(refused.message).toMatch(new RegExp(`its refreshes have failed since ${lastSuccess} \\(\\d+ attempts?, the last at \\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z; GET ${PATH}/${id}/metadata says why\\)`));
  expect(refused.message).toContain("fix the credential's idp_metadata_url");
  expect((await login(US, id)).status).toBe(409);

  expect((await metadataOf(US, id)).metadata).toMatchObject({ valid_until: expired, expired: true });
  const admin = await call(cluster.url(US), 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
  expect(admin.status).toBe(200);
  const listed = (admin.body.credentials as { credential_id: string; expired_since: string | null }[]).filter((c) => c.credential_id === id);
  expect(listed).toEqual([expect.objectContaining({ credential_id: id, expired_since: expired })]);
  // A credential whose document is current is listed with none.
  const current = (admin.body.credentials as { expired_since: string | null }[]).filter((c) => c.expired_since === null);
  expect(current.length).toBeGreaterThan(0);
});

test('a document whose refreshes are held (an untrusted change of certificates) says how to apply the newer one', async () => {
  const id = await credential('rotating.xml', at(DAY));
  // The IdP lists another certificate, unsigned: the refresh holds the document instead of applying it.
  idp.set('rotating.xml', idpMetadata({ entityId: ENTITY, ssoUrl: `http://${idp.hostPort}/sso`, certs: [signer('idp-b')], validUntil: at(DAY) }));
  expect(await eventually(async () => (await metadataOf(US, id)).held_metadata !== null)).toBe(true);
  const expired = at(-3600_000);
  await sql(US, SET_VALID_UNTIL, [id, expired]);

  const refused = await signIn(US, id);
  expect(refused.status).toBe(409);
  expect(refused.message).toMatch(new RegExp(`^Sign-in refused: the IdP metadata of this credential expired at ${expired} \\(its validUntil\\)`));
  expect(refused.message).toContain("is held, not applied (it changes the IdP's signing certificates without a trusted signature)");
  expect(refused.message).toContain(`POST /admin/metadata-refresh/${id}/accept`);
});

test('a schedule row kept by a region that does not refresh the credential (it stopped adopting it) is not reported as its refreshes', async () => {
  const until = at(DAY);
  const id = await credential('kept-schedule.xml', until);
  // europe-belgium keeps a schedule of it, as a region that adopted it and stopped does until the row is due:
  // its figures are no longer this credential's refreshes, which us-iowa runs.
  await sql(
    EU,
    `INSERT INTO metadata_refresh_state (credential_id, next_at, last_attempt_at, last_success_at, consecutive_failures) VALUES ($1::uuid, $2, $3, $3, 3)`,
    [id, at(30 * DAY), at(-DAY)],
  );
  expect((await metadataOf(EU, id)).refresh).toEqual({ home_region: US });

  const refused = await signIn(EU, id);
  expect(refused.status).toBe(409);
  expect(refused.message).toContain(`its refreshes run in region ${US}, whose GET ${PATH}/${id}/metadata says how they fail`);
  expect(refused.message).not.toContain('its refreshes have failed since');
  const started = await login(EU, id);
  expect(started.status).toBe(409);
  expect(started.message).toContain(`its refreshes run in region ${US}`);
});

test("/admin/metadata-refresh counts a document at its validUntil less the skew as expired, and one a millisecond later not, as each one's expired_since says", async () => {
  const id = await credential('boundary.xml', at(DAY));
  // us-iowa's metadata clock is the fixtures' date: a validUntil at or before it less the skew has passed.
  const bound = Date.parse(FIXTURE_DATE) - SKEW_SECONDS * 1000;
  expect(new Date(bound).toISOString()).toBe('2026-11-22T23:59:30.000Z');
  const iso = (ms: number) => new Date(ms).toISOString();
  const before = await refreshStatus();
  expect(before.expired).toBe(listedExpired(before));
  const past = [iso(bound), iso(bound - 1), '2026-11-22T23:59:30Z', '2026-11-23T01:59:30+02:00', '2026-11-22T23:59:29.9999999Z'];
  // The same instants written otherwise (no fraction, an offset, digits past the millisecond, which Date.parse
  // cuts), and a value that is no date at all (neither reading takes it as expired).
  const within = [iso(bound + 1), '2026-11-23T01:59:30.001+02:00', '2026-11-22T23:59:30.0019Z', 'not a date'];
  const ids = await copies(id, [...past, ...within]);
  try {
    const after = await refreshStatus();
    // Every copy is listed (fewer than 500 credentials), each with the expired_since the count agrees with.
    const since = new Map(after.credentials.map((c) => [c.credential_id, c.expired_since]));
    expect(ids.map((c) => since.get(c) !== null)).toEqual([...past.map(() => true), ...within.map(() => false)]);
    expect(after.expired).toBe(before.expired + past.length);
    expect(after.expired).toBe(listedExpired(after));
  } finally {
    await dropCopies(ids);
  }
});

test('/admin/metadata-refresh counts every expired credential, beyond the 500 it lists', async () => {
  const id = await credential('many.xml', at(DAY));
  const before = await refreshStatus();
  const ids = await copies(id, Array.from({ length: 520 }, () => at(-DAY)));
  try {
    const after = await refreshStatus();
    expect(after.credentials).toHaveLength(500);
    expect(listedExpired(after)).toBeLessThan(before.expired + 520);
    expect(after.expired).toBe(before.expired + 520);
    expect(after.failing_expired).toBe(before.failing_expired);
  } finally {
    await dropCopies(ids);
  }
  expect((await refreshStatus()).expired).toBe(before.expired);
});

test('/admin/metadata-refresh counts the expired credentials whose refreshes fail too (failing_expired), beyond the 500 it lists', async () => {
  const id = await credential('many-failing.xml', at(DAY));
  const before = await refreshStatus();
  // 530 expired copies, 510 of them failing, and 20 current copies failing: 530 failing, more than the list holds.
  const expired = await copies(id, Array.from({ length: 530 }, () => at(-DAY)));
  const current = await copies(id, Array.from({ length: 20 }, () => at(DAY)));
  try {
    await sql(US, "UPDATE metadata_refresh_state SET consecutive_failures = 2, last_error = 'unreachable' WHERE credential_id = ANY($1::uuid[])", [[...expired.slice(0, 510), ...current]]);
    const after = await refreshStatus();
    expect(after.credentials.filter((c) => c.consecutive_failures > 0)).toHaveLength(500);
    expect(after.failing).toBe(before.failing + 530);
    expect(after.expired).toBe(before.expired + 530);
    expect(after.failing_expired).toBe(before.failing_expired + 510);
  } finally {
    await dropCopies([...expired, ...current]);
  }
  expect((await refreshStatus()).failing_expired).toBe(before.failing_expired);
});
