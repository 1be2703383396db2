import { randomUUID } from 'node:crypto';
import { poolOf } from '../../src/db/client';
import { FIXTURE_DATE } from '../support/env';
import { call, createOrg, slashidHeaders } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { withWriteAfterFirstRead } from '../support/write-between-reads';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let org: { id: string; api_key: string };
let other: { id: string; api_key: string };

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('credentials', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
  org = await createOrg(r.url, 'org-a');
  other = await createOrg(r.url, 'org-b');
});
afterAll(async () => {
  await r.stop();
  await idp.close();
});

const validBody = () => ({
  idp_metadata_url: idp.url('okta.xml'),
  label: 'Okta prod',
  email_claims: ['email', 'mail'],
  enable_in_slashid_oidc_authz_server: true,
});

async function create(body: unknown = validBody(), who = org, headers: Record<string, string> = {}) {
  return call(r.url, 'POST', PATH, { body, headers: slashidHeaders(who, headers) });
}

const count = () => r.region.db.samlProviderCredential.count({ where: { deletedAt: null } });

describe('create and read', () => {
  test('POST answers 201 with the seed envelope and the credential', async () => {
    const res = await create();
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      meta: {},
      errors: [],
      result: { id: expect.stringMatching(/^[0-9a-f-]{36}$/), ...validBody() },
    });
    expect(res.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get('location')).toBe(`${PATH}/${String(res.body.result.id)}`);
    const got = await call(r.url, 'GET', `${PATH}/${res.body.result.id}`, { headers: slashidHeaders(org) });
    expect(got.status).toBe(200);
    expect(got.body).toEqual({ meta: {}, errors: [], result: res.body.result });
  });

  test('optional fields get their defaults', async () => {
    const res = await create({ idp_metadata_url: idp.url('okta.xml') });
    expect(res.status).toBe(201);
    expect(res.body.result).toMatchObject({ label: '', email_claims: [], enable_in_slashid_oidc_authz_server: false });
  });

  test('the list is paginated with limit and offset and reports the total', async () => {
    const fresh = await createOrg(r.url, 'paged');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create({ idp_metadata_url: idp.url('okta.xml'), label: `n${i}` }, fresh)).body.result.id);
    const all = await call(r.url, 'GET', PATH, { headers: slashidHeaders(fresh) });
    expect(all.status).toBe(200);
    expect(all.body.meta).toEqual({ pagination: { limit: 50, offset: 0, total_count: 5 } });
    expect(all.body.result.map((c: { id: string }) => c.id)).toEqual(ids);
    const page = await call(r.url, 'GET', `${PATH}?limit=2&offset=3`, { headers: slashidHeaders(fresh) });
    expect(page.body.meta.pagination).toEqual({ limit: 2, offset: 3, total_count: 5 });
    expect(page.body.result.map((c: { id: string }) => c.id)).toEqual(ids.slice(3, 5));
  });

  test('the page and total_count are read at one moment: a write committed while the list is read changes neither alone', async () => {
    const fresh = await createOrg(r.url, 'snapshot');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await create({ idp_metadata_url: idp.url('okta.xml'), label: `s${i}` }, fresh)).body.result.id);
    // The list's reads of this organization's credentials run one after the other, and the first one done
    // lets a deletion commit (on the pool, past this hook) before the next starts: the moment a concurrent
    // write can land between two statements, made certain.
    const { result: during, written } = await withWriteAfterFirstRead(
      poolOf(r.region.db),
      (q) => q.text.includes('saml_provider_credentials') && q.values.includes(fresh.id),
      { text: 'UPDATE saml_provider_credentials SET deleted_at = now() WHERE id = $1', values: [ids[0]] },
      () => call(r.url, 'GET', PATH, { headers: slashidHeaders(fresh) }),
    );
    expect(written).toBe(true);
    // Before the deletion (3 of 3): the page and its count agree. Two statements answered 3 listed of 2.
    expect({ listed: during.body.result.map((c: { id: string }) => c.id), total: during.body.meta.pagination.total_count }).toEqual({ listed: ids, total: 3 });
    const after = await call(r.url, 'GET', PATH, { headers: slashidHeaders(fresh) });
    expect({ listed: after.body.result.map((c: { id: string }) => c.id), total: after.body.meta.pagination.total_count }).toEqual({ listed: ids.slice(1), total: 2 });
    // Past the end, the count still comes with the empty page.
    const beyond = await call(r.url, 'GET', `${PATH}?offset=5`, { headers: slashidHeaders(fresh) });
    expect({ result: beyond.body.result, meta: beyond.body.meta }).toEqual({ result: [], meta: { pagination: { limit: 50, offset: 5, total_count: 2 } } });
  });

  test('a stored credential without email claims (NULL, as the column allows) reads as [] in the list and alone, as the ORM read it', async () => {
    const fresh = await createOrg(r.url, 'null-claims');
    const id = (await create({ idp_metadata_url: idp.url('okta.xml') }, fresh)).body.result.id as string;
    await r.region.db.$executeRawUnsafe('UPDATE saml_provider_credentials SET email_claims = NULL WHERE id = $1::uuid', id);
    const list = await call(r.url, 'GET', PATH, { headers: slashidHeaders(fresh) });
    expect(list.body.result.map((c: { email_claims: unknown }) => c.email_claims)).toEqual([[]]);
    const one = await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(fresh) });
    expect(one.body.result.email_claims).toEqual([]);
  });

  test('an offset of nine digits is taken and one of ten is a 400, not a query the database refuses', async () => {
    const largest = await call(r.url, 'GET', `${PATH}?offset=999999999`, { headers: slashidHeaders(org) });
    expect(largest.status).toBe(200);
    expect(largest.body.result).toEqual([]);
    for (const offset of ['1000000000', '9'.repeat(30)]) {
      const res = await call(r.url, 'GET', `${PATH}?offset=${offset}`, { headers: slashidHeaders(org) });
      expect({ offset, status: res.status, body: res.body }).toEqual({ offset, status: 400, body: { meta: {}, errors: [{ httpcode: 400, message: expect.stringContaining('offset') }] } });
    }
  });

  test('a document that asks to be fetched again sooner than the refresh interval is: after its cacheDuration, or halfway to its validUntil', async () => {
    const HOUR = 3600_000;
    const scheduled = async (name: string, attributes: string) => {
      idp.set(name, fixture('okta.xml').replace('<md:EntityDescriptor ', `<md:EntityDescriptor ${attributes} `));
      const before = Date.now();
      const c = (await create({ idp_metadata_url: idp.url(name) })).body.result;
      const after = Date.now();
      const md = await call(r.url, 'GET', `${PATH}/${c.id}/metadata`, { headers: slashidHeaders(org) });
      return { before, after, next: Date.parse(md.body.result.refresh.next_at) };
    };
    // The region refreshes daily (the default interval); these documents ask for three hours, and two.
    const cached = await scheduled('cached.xml', 'cacheDuration="PT3H"');
    expect(cached.next).toBeGreaterThanOrEqual(cached.before + 3 * HOUR - 1000);
    expect(cached.next).toBeLessThanOrEqual(cached.after + 3 * HOUR + 1000);
    // Four hours left as of the region's metadata clock (METADATA_VALIDATION_TIME, the fixtures' date, which the
    // fetch and sign-in judge validUntil by): fetched again two hours later by the real clock. Measured at the real
    // clock, weeks past that date, it had none left and waited the whole day.
    const validUntil = Date.parse(FIXTURE_DATE) + 4 * HOUR;
    const expiring = await scheduled('expiring.xml', `validUntil="${new Date(validUntil).toISOString()}"`);
    expect(expiring.next).toBeGreaterThanOrEqual(expiring.before + 2 * HOUR - 1000);
    expect(expiring.next).toBeLessThanOrEqual(expiring.after + 2 * HOUR + 1000);
  });

  test.each(['limit=0', 'limit=201', 'limit=abc', 'offset=-1', 'limit=1.5', 'foo=bar'])('the list answers 400 for %s', async (q) => {
    const res = await call(r.url, 'GET', `${PATH}?${q}`, { headers: slashidHeaders(org) });
    expect(res.status).toBe(400);
    expect(res.body.errors[0]).toEqual({ httpcode: 400, message: expect.any(String) });
  });
});

describe('list query messages', () => {
  const limit = (got: string) => `limit must be a whole number from 1 to 200 (got '${got}'); leave it out for 50.`;
  const offset = (got: string) => `offset must be a whole number from 0 to 999999999 (got '${got}'); leave it out for 0.`;
  test.each([
    ['limit=10000', limit('10000')],
    ['limit=500', limit('500')],
    ['limit=0', limit('0')],
    ['limit=-1', limit('-1')],
    ['limit=', limit('')],
    ['offset=1000000000', offset('1000000000')],
    ['offset=1.5', offset('1.5')],
    ['limit=1&limit=2', 'The query parameter limit is given more than once; give it once, a whole number from 1 to 200.'],
    ['page=2', "Unknown query parameter 'page'. The list takes limit (a whole number from 1 to 200, default 50) and offset (from 0 to 999999999, default 0)."],
  ])('%s names the parameter, its range and the value sent, not a regular expression', async (q, message) => {
    const res = await call(r.url, 'GET', `${PATH}?${q}`, { headers: slashidHeaders(org) });
    expect({ status: res.status, body: res.body }).toEqual({ status: 400, body: { meta: {}, errors: [{ httpcode: 400, message }] } });
  });
});

describe('authentication and isolation', () => {
  test.each([
    ['no API key', { 'SlashID-OrgID': '01a20904-0000-7000-8000-000000000000' }, 401],
    ['an unknown API key', { 'SlashID-OrgID': '01a20904-0000-7000-8000-000000000000', 'SlashID-API-Key': 'sidk_AAAAAAAAAAAAAAAA.' + 'A'.repeat(43) }, 401],
    ['a malformed API key', { 'SlashID-OrgID': '01a20904-0000-7000-8000-000000000000', 'SlashID-API-Key': 'hello' }, 401],
  ])('answers %s with %i', async (_n, headers, status) => {
    const res = await call(r.url, 'GET', PATH, { headers });
    expect(res.status).toBe(status);
    expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: status, message: expect.any(String) }] });
  });

  test("a PATCH of the metadata URL of a credential that is not the caller's (or not there) is a 404, and fetches nothing", async () => {
    const mine = (await create()).body.result;
    const probe = 'patch-probe.xml';
    for (const id of [mine.id, randomUUID()]) {
      const res = await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { idp_metadata_url: idp.url(probe), label: 'stolen' }, headers: slashidHeaders(other) });
      expect({ status: res.status, body: res.body }).toEqual({ status: 404, body: { meta: {}, errors: [{ httpcode: 404, message: expect.stringContaining('not found') }] } });
    }
    expect(idp.hits(probe)).toBe(0);
    expect((await call(r.url, 'GET', `${PATH}/${mine.id}`, { headers: slashidHeaders(org) })).body.result).toEqual(mine);
  });

  test('answers 400 without SlashID-OrgID or with one that is not an id', async () => {
    expect((await call(r.url, 'GET', PATH, { headers: { 'SlashID-API-Key': org.api_key } })).status).toBe(400);
    expect((await call(r.url, 'GET', PATH, { headers: { 'SlashID-API-Key': org.api_key, 'SlashID-OrgID': 'acme' } })).status).toBe(400);
  });

  test('quotes a refused header value as it was sent (UTF-8 read as UTF-8), and cut when long', async () => {
    // Header bytes reach the server as sent; a client puts UTF-8 there (fetch takes the bytes as latin-1 text).
    const utf8 = (text: string) => Buffer.from(text, 'utf8').toString('latin1');
    const before = await count();
    const level = await create(validBody(), org, { 'SlashID-Required-Consistency': utf8('toutes_régions') });
    expect(level.status).toBe(400);
    expect(level.body.errors[0].message).toContain("(got 'toutes_régions')");
    const long = await call(r.url, 'GET', PATH, { headers: { 'SlashID-API-Key': org.api_key, 'SlashID-OrgID': 'x'.repeat(5000) } });
    expect(long.status).toBe(400);
    expect(long.body.errors[0].message).toContain(`got '${'x'.repeat(64)}…' (5000 characters)`);
    expect(long.body.errors[0].message.length).toBeLessThan(200);
    // Bytes that are not UTF-8 show as '?', not as other letters.
    const latin = await create(validBody(), org, { 'SlashID-Required-Consistency-Timeout': '1\u00e9' });
    expect(latin.status).toBe(400);
    expect(latin.body.errors[0].message).toContain("(got '1?')");
    // Invisible formatting characters (a right-to-left override) show as '?', not as reversed text.
    const rtl = await create(validBody(), org, { 'SlashID-Required-Consistency': utf8('abc\u202eevil') });
    expect(rtl.body.errors[0].message).toContain("(got 'abc?evil')");
    expect(await count()).toBe(before);
  });

  test("answers 403 for a valid key used on another organization, and writes nothing", async () => {
    const before = await count();
    const res = await call(r.url, 'POST', PATH, { body: validBody(), headers: slashidHeaders({ id: other.id, api_key: org.api_key }) });
    expect(res.status).toBe(403);
    expect(await count()).toBe(before);
    expect((await call(r.url, 'GET', PATH, { headers: slashidHeaders({ id: other.id, api_key: org.api_key }) })).status).toBe(403);
  });

  test("another organization's credential is 404 for read, update and delete, and stays untouched", async () => {
    const mine = (await create()).body.result;
    const h = slashidHeaders(other);
    expect((await call(r.url, 'GET', `${PATH}/${mine.id}`, { headers: h })).status).toBe(404);
    expect((await call(r.url, 'PATCH', `${PATH}/${mine.id}`, { body: { label: 'stolen' }, headers: h })).status).toBe(404);
    expect((await call(r.url, 'DELETE', `${PATH}/${mine.id}`, { headers: h })).status).toBe(404);
    // Its sub-resources too: the metadata (URL, certificates, refresh errors) and the SSO settings.
    for (const sub of ['metadata', 'sso-settings']) {
      const res = await call(r.url, 'GET', `${PATH}/${mine.id}/${sub}`, { headers: h });
      expect({ sub, status: res.status }).toEqual({ sub, status: 404 });
      expect(JSON.stringify(res.body)).not.toContain(idp.url('okta.xml'));
    }
    expect((await call(r.url, 'GET', `${PATH}/${mine.id}/metadata`, { headers: slashidHeaders(org) })).status).toBe(200);
    const list = await call(r.url, 'GET', PATH, { headers: h });
    expect(list.body.result.map((c: { id: string }) => c.id)).not.toContain(mine.id);
    const still = await call(r.url, 'GET', `${PATH}/${mine.id}`, { headers: slashidHeaders(org) });
    expect(still.body.result).toEqual(mine);
  });
});

describe('validation: 400 in the envelope and nothing written', () => {
  const url = () => idp.url('okta.xml');
  test.each<[string, () => unknown]>([
    ['a missing idp_metadata_url', () => ({ label: 'x' })],
    ['a relative URL', () => ({ idp_metadata_url: '/metadata.xml' })],
    ['a non-http scheme', () => ({ idp_metadata_url: 'ftp://idp.example.com/md.xml' })],
    ['a non-URL', () => ({ idp_metadata_url: 'not a url' })],
    ['an unknown field', () => ({ idp_metadata_url: url(), colour: 'red' })],
    ['a wrong type for label', () => ({ idp_metadata_url: url(), label: 5 })],
    ['four email claims', () => ({ idp_metadata_url: url(), email_claims: ['a', 'b', 'c', 'd'] })],
    ['an empty email claim', () => ({ idp_metadata_url: url(), email_claims: [''] })],
    ['a blank email claim', () => ({ idp_metadata_url: url(), email_claims: ['   '] })],
    ['an email claim of invisible characters only', () => ({ idp_metadata_url: url(), email_claims: ['\u200b\u00a0'] })],
    ['an email claim of blank Braille patterns only (U+2800)', () => ({ idp_metadata_url: url(), email_claims: ['\u2800\u2800'] })],
    ['a non-string email claim', () => ({ idp_metadata_url: url(), email_claims: [1] })],
    ['a string for the boolean', () => ({ idp_metadata_url: url(), enable_in_slashid_oidc_authz_server: 'yes' })],
    ['a label over 256 characters', () => ({ idp_metadata_url: url(), label: 'x'.repeat(257) })],
    ['a label with an ESC (a terminal escape sequence)', () => ({ idp_metadata_url: url(), label: 'Okta \u001b[31mprod' })],
    ['a label with a line break', () => ({ idp_metadata_url: url(), label: 'Okta\nprod' })],
    ['a label with a right-to-left override', () => ({ idp_metadata_url: url(), label: 'Okta \u202edorp' })],
    ['a label with a zero-width space', () => ({ idp_metadata_url: url(), label: 'Ok\u200bta' })],
    ['a label with a line separator (U+2028)', () => ({ idp_metadata_url: url(), label: 'Okta\u2028prod' })],
    ['a blank label', () => ({ idp_metadata_url: url(), label: ' \u00a0 ' })],
    ['an email claim with an ESC', () => ({ idp_metadata_url: url(), email_claims: ['mail\u001b[0m'] })],
    ['an email claim with a right-to-left override', () => ({ idp_metadata_url: url(), email_claims: ['email', 'liam\u202e'] })],
    ['an email claim with a zero-width space', () => ({ idp_metadata_url: url(), email_claims: ['e\u200bmail'] })],
    ['an email claim over 256 characters', () => ({ idp_metadata_url: url(), email_claims: ['x'.repeat(257)] })],
    ['a URL over 2,048 characters', () => ({ idp_metadata_url: `${url()}?${'q'.repeat(2048 - url().length)}` })],
    ['six trusted certificates', () => ({ idp_metadata_url: url(), idp_trusted_certificates: Array.from({ length: 6 }, () => 'MIIB') })],
    ['an array body', () => [{ idp_metadata_url: url() }]],
    ['null', () => null],
  ])('%s', async (_n, body) => {
    const before = await count();
    const res = await create(body());
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: 400, message: expect.stringMatching(/\w/) }] });
    expect(await count()).toBe(before);
  });

  test('a label and an email claim of 256 characters and a URL of 2,048 are taken', async () => {
    const res = await create({ idp_metadata_url: `${url()}?${'q'.repeat(2047 - url().length)}`, label: 'x'.repeat(256), email_claims: ['y'.repeat(256)] });
    expect(res.status).toBe(201);
    expect(res.body.result).toMatchObject({ label: 'x'.repeat(256), email_claims: ['y'.repeat(256)] });
    expect(res.body.result.idp_metadata_url).toHaveLength(2048);
  });

  test('a label takes any script, spaces and the joiners; one with a control or invisible character is refused in a PATCH too, and says why', async () => {
    for (const label of ['', 'Okta prod', 'Okta\u3000本番', '\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645', '\u{1f469}\u200d\u{1f4bb} team']) {
      const res = await create({ idp_metadata_url: url(), label });
      expect({ label, status: res.status }).toEqual({ label, status: 201 });
      expect(res.body.result.label).toBe(label);
    }
    const id = String((await create()).body.result.id);
    const patched = await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { label: 'Okta \u202edorp' }, headers: slashidHeaders(org) });
    expect(patched.status).toBe(400);
    expect(patched.body.errors[0].message).toBe(
      'Invalid request body: label: must not contain a control, line-break or invisible formatting character (an ESC, a right-to-left override, a zero-width space), nor be blank (white space or invisible characters only).',
    );
    expect((await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).body.result.label).toBe(validBody().label);
  });

  test('a label stored before the rule (or replicated from a region without it) is still read, and the credential still patched', async () => {
    const id = String((await create()).body.result.id);
    const old = 'Okta \u001b[31m\u202edorp\u200b';
    await r.region.db.samlProviderCredential.update({ where: { id }, data: { label: old } });
    const got = await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
    expect({ status: got.status, label: got.body.result.label }).toEqual({ status: 200, label: old });
    const listed = await call(r.url, 'GET', `${PATH}?limit=100`, { headers: slashidHeaders(org) });
    expect(listed.status).toBe(200);
    expect(listed.body.result.find((c: { id: string }) => c.id === id).label).toBe(old);
    const patched = await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { email_claims: ['mail'] }, headers: slashidHeaders(org) });
    expect(patched.status).toBe(204);
  });

  test('email claims follow the label\'s rule: the joiners are taken, a control or invisible character is refused in a PATCH too, and says why', async () => {
    const joined = ['\u0645\u06cc\u200c\u0644', 'mail\u3000addr'];
    const res = await create({ idp_metadata_url: url(), email_claims: joined });
    expect({ status: res.status, claims: res.body.result?.email_claims }).toEqual({ status: 201, claims: joined });
    const id = String((await create()).body.result.id);
    const patched = await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { email_claims: ['email', 'liam\u202e'] }, headers: slashidHeaders(org) });
    expect(patched.body.errors).toEqual([
      {
        httpcode: 400,
        message:
          'Invalid request body: email_claims.1: must not contain a control, line-break or invisible formatting character (an ESC, a right-to-left override, a zero-width space), nor be blank (white space or invisible characters only).',
      },
    ]);
    expect((await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).body.result.email_claims).toEqual(validBody().email_claims);
  });

  test('email claims stored before the rule are still read, and the credential still patched', async () => {
    const id = String((await create()).body.result.id);
    const old = ['mail\u001b[0m', 'liam\u202e'];
    await r.region.db.samlProviderCredential.update({ where: { id }, data: { emailClaims: old } });
    const got = await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
    expect({ status: got.status, claims: got.body.result.email_claims }).toEqual({ status: 200, claims: old });
    expect((await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { label: 'renamed' }, headers: slashidHeaders(org) })).status).toBe(204);
  });

  test('email claims named twice are kept as sent, in create and PATCH: the contract does not refuse them (no uniqueItems)', async () => {
    const res = await create({ idp_metadata_url: url(), email_claims: ['email', 'email', 'Email'] });
    expect(res.status).toBe(201);
    expect(res.body.result.email_claims).toEqual(['email', 'email', 'Email']);
    const id = String(res.body.result.id);
    const patched = await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { email_claims: ['mail', 'mail'] }, headers: slashidHeaders(org) });
    expect(patched.status).toBe(204);
    expect((await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).body.result.email_claims).toEqual(['mail', 'mail']);
  });

  test('the message names the offending field', async () => {
    const res = await create({ idp_metadata_url: url(), email_claims: ['a', 'b', 'c', 'd'] });
    expect(res.body.errors[0].message).toContain('email_claims');
    // Six pins: refused by their count (five at most), before any of them is read.
    const pins = await create({ idp_metadata_url: url(), idp_trusted_certificates: Array.from({ length: 6 }, () => 'MIIB') });
    expect(pins.body.errors[0].message).toBe('Invalid request body: idp_trusted_certificates: must NOT have more than 5 items.');
  });

  test.each<[string, { rawBody?: string; headers: Record<string, string> }]>([
    ['invalid JSON', { rawBody: '{"idp_metadata_url": ', headers: { 'content-type': 'application/json' } }],
    ['a non-JSON content type', { rawBody: 'idp_metadata_url=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
    ['no body', { headers: { 'content-type': 'application/json' } }],
    ['an oversized body', { rawBody: JSON.stringify({ idp_metadata_url: 'https://a.example/', label: 'x'.repeat(70_000) }), headers: { 'content-type': 'application/json' } }],
  ])('%s', async (_n, opts) => {
    const before = await count();
    const res = await call(r.url, 'POST', PATH, { rawBody: opts.rawBody, headers: { ...slashidHeaders(org), ...opts.headers } });
    expect(res.status).toBe(400);
    expect(res.body.errors[0].httpcode).toBe(400);
    expect(JSON.stringify(res.body)).not.toMatch(/\bat \w+ \(|node_modules|SyntaxError/);
    expect(await count()).toBe(before);
  });

  test('a body naming a field twice is refused, naming it, in create and patch; one that only looks so is taken', async () => {
    const before = await count();
    const json = { 'content-type': 'application/json' };
    const post = (rawBody: string) => call(r.url, 'POST', PATH, { rawBody, headers: { ...slashidHeaders(org), ...json } });
    const twice = (field: string, where = '') => ({
      status: 400,
      body: { meta: {}, errors: [{ httpcode: 400, message: `The request body names the field '${field}' more than once${where}; send each field once (JSON parsers differ on which value counts).` }] },
    });
    const answer = async (res: Promise<{ status: number; body: unknown }>) => {
      const { status, body } = await res;
      return { status, body };
    };
    const u = JSON.stringify(url());
    expect(await answer(post(`{"idp_metadata_url":${u},"label":"a","label":"b"}`))).toEqual(twice('label'));
    // Spelt differently, the same key ("\u006cabel" is "label").
    expect(await answer(post(`{"label":"a","idp_metadata_url":${u},"\u006cabel":"b"}`))).toEqual(twice('label'));
    expect(await answer(post(`{"idp_metadata_url":${u},"idp_metadata_url":"https://elsewhere.example/md.xml"}`))).toEqual(twice('idp_metadata_url'));
    // Nested: said where (the schema would refuse the object anyway, but the repeated key is the first problem).
    expect(await answer(post(`{"idp_metadata_url":${u},"email_claims":[{"a":1},{"b":1,"b":2}]}`))).toEqual(twice('b', " in 'email_claims.1'"));
    // A name with a '.' or '[' is quoted, as it is not a path ("x.y" was b in y in x as well).
    expect(await answer(post(`{"idp_metadata_url":${u},"x.y":{"b":1,"b":2}}`))).toEqual(twice('b', ` in '["x.y"]'`));
    expect(await answer(post(`{"idp_metadata_url":${u},"x":{"[1]":{"b":1,"b":2}}}`))).toEqual(twice('b', ` in 'x["[1]"]'`));
    expect(await count()).toBe(before);
    const created = await create({ idp_metadata_url: url(), label: 'kept' });
    const id = String(created.body.result.id);
    const patch = call(r.url, 'PATCH', `${PATH}/${id}`, { rawBody: '{"label":"x","email_claims":["e"],"label":"y"}', headers: { ...slashidHeaders(org), ...json } });
    expect(await answer(patch)).toEqual(twice('label'));
    expect((await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).body.result.label).toBe('kept');
    // Quotes and colons inside strings, and the same key in two objects, are not repeats.
    const tricky = 'label\\":"label":\\';
    const lookalike = await post(`{"idp_metadata_url":${u},"label":${JSON.stringify(tricky)},"email_claims":["label","label:"]}`);
    expect({ status: lookalike.status, errors: lookalike.body.errors }).toEqual({ status: 201, errors: [] });
    expect(lookalike.body.result.label).toBe(tricky);
    const twoObjects = await post(`{"idp_metadata_url":${u},"email_claims":[{"b":1},{"b":2}]}`);
    expect(twoObjects.body.errors[0].message).toMatch(/^Invalid request body: email_claims\.0: must be string/);
  });

  test.each([
    ['SlashID-Required-Consistency', 'everywhere'],
    ['SlashID-Required-Consistency', 'ALL_REGIONS'],
    ['SlashID-Required-Consistency', ''],
    ['SlashID-Required-Consistency-Timeout', ''],
    ['SlashID-Required-Consistency-Timeout', '0'],
    ['SlashID-Required-Consistency-Timeout', '121'],
    ['SlashID-Required-Consistency-Timeout', '1.5'],
    ['SlashID-Required-Consistency-Timeout', 'soon'],
  ])('%s: %s', async (header, value) => {
    const before = await count();
    const res = await create(validBody(), org, { [header]: value });
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toContain(header);
    expect(await count()).toBe(before);
  });

  test('valid consistency headers are accepted', async () => {
    for (const [level, timeout] of [['local_region', '1'], ['all_regions', '120'], ['local_region', '30'], ['local_region', '005'], ['local_region', '0005'], ['all_regions', '00120']]) {
      const res = await create(validBody(), org, { 'SlashID-Required-Consistency': level ?? '', 'SlashID-Required-Consistency-Timeout': timeout ?? '' });
      expect(res.status).toBe(201);
    }
  });
});

describe('update and delete', () => {
  test('PATCH answers 204 and changes only the given fields', async () => {
    const c = (await create()).body.result;
    const res = await call(r.url, 'PATCH', `${PATH}/${c.id}`, { body: { label: 'renamed', email_claims: ['upn'] }, headers: slashidHeaders(org) });
    expect(res.status).toBe(204);
    expect(res.body).toBeNull();
    const got = await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) });
    expect(got.body.result).toEqual({ ...c, label: 'renamed', email_claims: ['upn'] });
  });

  test('an empty PATCH (every field is optional) answers 204 and writes nothing; 404 for a credential that is not there', async () => {
    const c = (await create()).body.result;
    const changes = async () => Number((await r.region.db.$queryRawUnsafe<{ n: bigint }[]>("SELECT count(*) AS n FROM replication_outbox WHERE event::text LIKE '%' || $1 || '%'", c.id))[0]?.n);
    const before = await changes();
    const res = await call(r.url, 'PATCH', `${PATH}/${c.id}`, { body: {}, headers: slashidHeaders(org, { 'SlashID-Required-Consistency': 'all_regions' }) });
    expect(res.status).toBe(204);
    expect(res.headers.get('x-change-id')).toBeNull();
    expect(await changes()).toBe(before);
    expect((await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).body.result).toEqual(c);
    const missing = await call(r.url, 'PATCH', `${PATH}/${randomUUID()}`, { body: {}, headers: slashidHeaders(org) });
    expect(missing.status).toBe(404);
  });

  test.each<[string, unknown]>([
    ['an unknown field', { nope: 1 }],
    ['a bad URL', { idp_metadata_url: 'gopher://x' }],
  ])('PATCH answers 400 for %s and changes nothing', async (_n, body) => {
    const c = (await create()).body.result;
    const res = await call(r.url, 'PATCH', `${PATH}/${c.id}`, { body, headers: slashidHeaders(org) });
    expect(res.status).toBe(400);
    expect((await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).body.result).toEqual(c);
  });

  test('a PATCH that waited for the credential\'s lock builds on what the lock holder committed', async () => {
    const c = (await create()).body.result;
    const { Client } = await import('pg');
    const holder = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
    await holder.connect();
    try {
      // Another writer holds the key's lock and changes the label before it commits.
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`saml_provider_credentials:${c.id}`]);
      await holder.query("UPDATE saml_provider_credentials SET label = 'set by the holder' WHERE id = $1", [c.id]);
      const patched = call(r.url, 'PATCH', `${PATH}/${c.id}`, { body: { email_claims: ['upn'] }, headers: slashidHeaders(org) });
      const waiting = async () => (await holder.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rows[0]?.n === 1;
      while (!(await waiting())) await new Promise((res) => setTimeout(res, 20));
      await holder.query('COMMIT');
      expect((await patched).status).toBe(204);
    } finally {
      await holder.end();
    }
    const got = await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) });
    expect(got.body.result).toEqual({ ...c, label: 'set by the holder', email_claims: ['upn'] });
  });

  test('a PATCH does not answer 404 from what the region guessed the row holds: a row restored by hand is found', async () => {
    // The region keeps the row its DELETE stored as the guess of the key (a tombstone, which answers 404).
    const c = (await create()).body.result;
    expect((await call(r.url, 'DELETE', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).status).toBe(204);
    // Restored by hand, keeping the version: only a check of the whole row sees it.
    await r.region.db.$executeRawUnsafe("UPDATE saml_provider_credentials SET deleted_at = NULL, idp_metadata_url = $2 WHERE id = $1::uuid", c.id, c.idp_metadata_url);
    const res = await call(r.url, 'PATCH', `${PATH}/${c.id}`, { body: { label: 'found' }, headers: slashidHeaders(org) });
    expect(res.status).toBe(204);
    expect((await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).body.result.label).toBe('found');
  });

  test('a DELETE with a body over 64 KiB is a 400, as for the operations that take a body, and deletes nothing', async () => {
    const c = (await create()).body.result;
    const res = await call(r.url, 'DELETE', `${PATH}/${c.id}`, { rawBody: 'x'.repeat(70_000), headers: slashidHeaders(org) });
    expect({ status: res.status, body: res.body }).toEqual({ status: 400, body: { meta: {}, errors: [{ httpcode: 400, message: expect.stringContaining('64 KiB') }] } });
    expect((await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).status).toBe(200);
  });

  test('a deleted credential is neither listed nor counted in total_count', async () => {
    const fresh = await createOrg(r.url, 'counted');
    const kept = (await create(validBody(), fresh)).body.result;
    const gone = (await create(validBody(), fresh)).body.result;
    expect((await call(r.url, 'DELETE', `${PATH}/${gone.id}`, { headers: slashidHeaders(fresh) })).status).toBe(204);
    const list = await call(r.url, 'GET', PATH, { headers: slashidHeaders(fresh) });
    expect({ ids: list.body.result.map((c: { id: string }) => c.id), meta: list.body.meta }).toEqual({
      ids: [kept.id],
      meta: { pagination: { limit: 50, offset: 0, total_count: 1 } },
    });
  });

  test('an id written in upper case names the same credential, and the answers name it as it was created', async () => {
    const c = (await create()).body.result;
    const upper = c.id.toUpperCase();
    expect((await call(r.url, 'PATCH', `${PATH}/${upper}`, { body: { label: 'by upper case' }, headers: slashidHeaders(org) })).status).toBe(204);
    expect((await call(r.url, 'GET', `${PATH}/${upper}`, { headers: slashidHeaders(org) })).body.result).toEqual({ ...c, label: 'by upper case' });
    const md = await call(r.url, 'GET', `${PATH}/${upper}/metadata`, { headers: slashidHeaders(org) });
    expect(md.body.result.id).toBe(c.id);
  });

  test('PATCH and DELETE of an unknown id answer 404', async () => {
    for (const id of ['01a20904-0000-7000-8000-000000000000', 'nope']) {
      expect((await call(r.url, 'PATCH', `${PATH}/${id}`, { body: { label: 'x' }, headers: slashidHeaders(org) })).status).toBe(404);
      expect((await call(r.url, 'DELETE', `${PATH}/${id}`, { headers: slashidHeaders(org) })).status).toBe(404);
    }
  });

  test('DELETE answers 204; the credential is gone from reads and cannot be patched', async () => {
    const c = (await create()).body.result;
    const del = await call(r.url, 'DELETE', `${PATH}/${c.id}`, { headers: slashidHeaders(org) });
    expect(del.status).toBe(204);
    expect((await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).status).toBe(404);
    expect((await call(r.url, 'PATCH', `${PATH}/${c.id}`, { body: { label: 'x' }, headers: slashidHeaders(org) })).status).toBe(404);
    expect((await call(r.url, 'DELETE', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).status).toBe(404);
    for (const sub of ['metadata', 'sso-settings']) {
      expect({ sub, status: (await call(r.url, 'GET', `${PATH}/${c.id}/${sub}`, { headers: slashidHeaders(org) })).status }).toEqual({ sub, status: 404 });
    }
    const list = await call(r.url, 'GET', `${PATH}?limit=200`, { headers: slashidHeaders(org) });
    expect(list.body.result.map((x: { id: string }) => x.id)).not.toContain(c.id);
  });
});

test('an unknown endpoint answers 404 in the envelope', async () => {
  const res = await call(r.url, 'GET', '/nope', {});
  expect(res.status).toBe(404);
  expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: 404, message: expect.any(String) }] });
});

test('local_region answers 408 when the local commit outlasts the timeout, and the write still completes', async () => {
  const c = (await create()).body.result;
  const { Client } = await import('pg');
  const blocker = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await blocker.connect();
  try {
    // Hold the row's write lock, as a long transaction would.
    await blocker.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [`saml_provider_credentials:${c.id}`]);
    const started = Date.now();
    const res = await call(r.url, 'PATCH', `${PATH}/${c.id}`, {
      body: { label: 'slow' },
      headers: slashidHeaders(org, { 'SlashID-Required-Consistency-Timeout': '1' }),
    });
    expect(res.status).toBe(408);
    // Answered at the header's 1 s, not at the default 30 s (the bounds only tell the two apart).
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(res.body.errors[0]).toEqual({ httpcode: 408, message: expect.stringContaining('not cancelled') });
    await blocker.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [`saml_provider_credentials:${c.id}`]);
  } finally {
    await blocker.end();
  }
  const done = async () => (await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).body.result.label === 'slow';
  const { eventually } = await import('../support/harness');
  expect(await eventually(done, 5000)).toBe(true);
});

test("a create whose local commit outlasts the timeout answers a 408 that says how to find it, and a retry with its Idempotency-Key answers it", async () => {
  const owner = await createOrg(r.url, 'slow-commit');
  const key = randomUUID();
  const headers = slashidHeaders(owner, { 'Idempotency-Key': key });
  const { Client } = await import('pg');
  const blocker = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await blocker.connect();
  const orgLock = `organizations:${owner.id}`;
  try {
    // Hold the organization's lock, under which a create counts its credentials, as a long transaction would.
    await blocker.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [orgLock]);
    const res = await call(r.url, 'POST', PATH, { body: validBody(), headers: { ...headers, 'SlashID-Required-Consistency-Timeout': '1' } });
    expect({ status: res.status, body: res.body }).toEqual({
      status: 408,
      body: { meta: {}, errors: [{ httpcode: 408, message: expect.stringContaining('read the resource to see whether it did, or retry a create with the same Idempotency-Key') }] },
    });
    await blocker.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [orgLock]);
  } finally {
    await blocker.end();
  }
  // The retry the message points to: it waits for the first create if it still runs, and answers what it made.
  const retry = await call(r.url, 'POST', PATH, { body: validBody(), headers });
  expect({ status: retry.status, replayed: retry.headers.get('idempotent-replayed') }).toEqual({ status: 201, replayed: 'true' });
  const list = await call(r.url, 'GET', PATH, { headers: slashidHeaders(owner) });
  expect(list.body.result.map((x: { id: string }) => x.id)).toEqual([retry.body.result.id]);
});
