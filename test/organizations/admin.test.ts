import crypto from 'node:crypto';
import { adminHeaders, call, createOrg, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { poolOf } from '../../src/db/client';
import { MAX_ORG_DEPTH } from '../../src/organizations/store';
import { generateApiKey } from '../../src/organizations/api-keys';
import { withWriteAfterFirstRead } from '../support/write-between-reads';

let r: InProcessRegion;
let idp: IdpServer;
beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('admin', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
});
afterAll(async () => {
  await r.stop();
  await idp.close();
});

const LIST = '/organizations/sso/saml/provider-credentials';

describe('admin authentication', () => {
  test.each([
    ['no header', {}],
    ['wrong token', { authorization: 'Bearer wrong-token-wrong-token' }],
    ['not a bearer token', { authorization: 'Basic abc' }],
  ])('answers 401 with %s', async (_name, headers) => {
    const res = await call(r.url, 'POST', '/admin/organizations', { body: { name: 'x' }, headers });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: 401, message: expect.stringContaining('ADMIN_TOKEN') }] });
  });

  // A wrong token (another cluster's secrets file, a token from before a rotation) was answered "send
  // Authorization: Bearer <ADMIN_TOKEN>", as if nothing had been sent.
  test.each([
    ['no header', {}, 'Admin API: send Authorization: Bearer <ADMIN_TOKEN>.'],
    ['not a bearer token', { authorization: 'Basic abc' }, 'Admin API: the Authorization header must be "Bearer <ADMIN_TOKEN>".'],
    ['wrong token', { authorization: 'Bearer wrong-token-wrong-token' }, "Admin API: the Bearer token is not this region's admin token"],
  ])('the 401 says what was wrong: %s', async (_name, headers, message) => {
    for (const path of ['/admin/replication', '/metrics']) {
      const res = await call(r.url, 'GET', path, { headers });
      expect([path, res.status, res.body?.errors?.[0]?.message]).toEqual([path, 401, expect.stringContaining(message)]);
    }
  });
});

describe('organizations', () => {
  test('creates an organization, shows its key once, and never returns the key again', async () => {
    const res = await call(r.url, 'POST', '/admin/organizations', { body: { name: 'Acme' }, headers: adminHeaders });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), name: 'Acme', parent_id: null, created_at: expect.any(String), api_key: expect.stringMatching(/^sidk_/) });
    const got = await call(r.url, 'GET', `/admin/organizations/${res.body.id}`, { headers: adminHeaders });
    expect(got.status).toBe(200);
    expect(got.body).toEqual({ id: res.body.id, name: 'Acme', parent_id: null, created_at: res.body.created_at });
    expect(JSON.stringify(got.body)).not.toContain('sidk_');
  });

  test('stores only a hash of the key', async () => {
    const org = await createOrg(r.url, 'hashed');
    const rows = await r.region.db.apiKey.findMany({ where: { orgId: org.id } });
    expect(rows).toHaveLength(1);
    expect(rows[0]?.keyHash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(rows)).not.toContain(org.api_key.split('.')[1]);
  });

  test('creates a sub-organization under an existing parent', async () => {
    const parent = await createOrg(r.url, 'parent');
    const child = await createOrg(r.url, 'child', { parent_id: parent.id });
    expect(child.parent_id).toBe(parent.id);
  });

  test('an Idempotency-Key on a create or a key rotation is a 400 that says why, and nothing is made or rotated', async () => {
    const before = await r.region.db.$queryRawUnsafe<{ n: number }[]>("SELECT count(*)::int AS n FROM organizations WHERE name = 'with a key'");
    const res = await call(r.url, 'POST', '/admin/organizations', { body: { name: 'with a key' }, headers: { ...adminHeaders, 'Idempotency-Key': 'k-1' } });
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toMatch(/^Idempotency-Key is not taken here: the answer carries an API key that is stored only as a hash/);
    expect(await r.region.db.$queryRawUnsafe("SELECT count(*)::int AS n FROM organizations WHERE name = 'with a key'")).toEqual(before);
    const org = await createOrg(r.url, 'rotated with a key');
    const rotated = await call(r.url, 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: { ...adminHeaders, 'Idempotency-Key': 'k-2' } });
    expect(rotated.status).toBe(400);
    expect(rotated.body.errors[0].message).toMatch(/^Idempotency-Key is not taken here/);
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders(org) })).status).toBe(200);
  });

  test('parent_id null creates a root, so a client may send back what it read', async () => {
    const res = await call(r.url, 'POST', '/admin/organizations', { body: { name: 'explicit root', parent_id: null }, headers: adminHeaders });
    expect(res.status).toBe(201);
    expect(res.body.parent_id).toBeNull();
    expect((await call(r.url, 'GET', `/admin/organizations/${res.body.id}`, { headers: adminHeaders })).body.parent_id).toBeNull();
  });

  test.each([
    ['missing name', {}],
    ['empty name', { name: '' }],
    ['a name of spaces only', { name: '  \t ' }],
    // Shows as nothing in the console and the admin API's lists (a review stored one).
    ['a name of a zero-width space only', { name: '\u200b' }],
    ['a name of Unicode spaces and a right-to-left override only', { name: '\u00a0\u3000\u202e' }],
    ['unknown field', { name: 'a', color: 'red' }],
    ['parent_id not a uuid', { name: 'a', parent_id: 'nope' }],
    ['name not a string', { name: 42 }],
    ['parent_id as a urn:uuid', { name: 'a', parent_id: 'urn:uuid:01a20904-0000-7000-8000-000000000000' }],
  ])('answers 400 for %s and creates nothing', async (_n, body) => {
    const before = await r.region.db.organization.count();
    const res = await call(r.url, 'POST', '/admin/organizations', { body, headers: adminHeaders });
    expect(res.status).toBe(400);
    expect(res.body.errors[0].httpcode).toBe(400);
    expect(await r.region.db.organization.count()).toBe(before);
  });

  const PLAIN_TEXT_MESSAGE =
    'Invalid request body: name: must not contain a control, line-break or invisible formatting character (an ESC, a right-to-left override, a zero-width space), nor be blank (white space or invisible characters only).';

  test.each([
    ['an ESC (a terminal escape sequence)', 'Acme \u001b[31mCorp'],
    ['a line break', 'Acme\nCorp'],
    ['a tab', 'Acme\tCorp'],
    ['a right-to-left override', 'Acme \u202eproC'],
    ['a zero-width space', 'Ac\u200bme'],
    ['a paragraph separator (U+2029)', 'Acme\u2029Corp'],
  ])('a name with %s is a 400 that says why, as a credential label is, and creates nothing', async (_n, name) => {
    const before = await r.region.db.organization.count();
    const res = await call(r.url, 'POST', '/admin/organizations', { body: { name }, headers: adminHeaders });
    expect(res.body.errors).toEqual([{ httpcode: 400, message: PLAIN_TEXT_MESSAGE }]);
    expect(await r.region.db.organization.count()).toBe(before);
  });

  test('a name takes any script, spaces and the joiners U+200C and U+200D', async () => {
    for (const name of ['Acme Corp', 'Acme\u3000本社', '\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645', '\u{1f469}\u200d\u{1f4bb} team']) {
      const res = await call(r.url, 'POST', '/admin/organizations', { body: { name }, headers: adminHeaders });
      expect({ name, status: res.status, stored: res.body.name }).toEqual({ name, status: 201, stored: name });
    }
  });

  test('a name stored before the rule (or replicated from a region without it) is still read, listed and found by name', async () => {
    const org = await createOrg(r.url, 'renamed below the API');
    const old = 'Acme \u001b[31m\u202eproC\u200b';
    await r.region.db.organization.update({ where: { id: org.id }, data: { name: old } });
    const got = await call(r.url, 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders });
    expect({ status: got.status, name: got.body.name }).toEqual({ status: 200, name: old });
    const found = await call(r.url, 'GET', `/admin/organizations?name=${encodeURIComponent(old)}`, { headers: adminHeaders });
    expect({ status: found.status, ids: found.body.organizations.map((o: { id: string }) => o.id) }).toEqual({ status: 200, ids: [org.id] });
  });

  test.each([
    ['not a UUID', 'nope', 'Invalid request body: parent_id: must be a UUID or null.'],
    ['a number', 7, 'Invalid request body: parent_id: must be string or null.'],
  ])('a parent_id that is %s is one problem, said as what it may be', async (_n, parentId, message) => {
    const res = await call(r.url, 'POST', '/admin/organizations', { body: { name: 'a', parent_id: parentId }, headers: adminHeaders });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ httpcode: 400, message }]);
  });

  test('a parent_id in upper case names the same parent: the answer gives it in lower case, as every later read does', async () => {
    const parent = await createOrg(r.url, 'upper-case parent');
    const child = await createOrg(r.url, 'child of an upper-case id', { parent_id: parent.id.toUpperCase() });
    expect(child.parent_id).toBe(parent.id);
    const got = await call(r.url, 'GET', `/admin/organizations/${child.id}`, { headers: adminHeaders });
    expect(got.body.parent_id).toBe(parent.id);
  });

  test('answers 404 for a parent that does not exist', async () => {
    const res = await call(r.url, 'POST', '/admin/organizations', {
      body: { name: 'orphan', parent_id: '01a20904-0000-7000-8000-000000000000' },
      headers: adminHeaders,
    });
    expect(res.status).toBe(404);
  });

  test('answers 404 for an unknown organization', async () => {
    for (const id of ['01a20904-0000-7000-8000-000000000000', 'not-a-uuid']) {
      const res = await call(r.url, 'GET', `/admin/organizations/${id}`, { headers: adminHeaders });
      expect(res.status).toBe(404);
    }
  });
});

describe('listing organizations', () => {
  const list = (query: string, headers: Record<string, string> = adminHeaders) => call(r.url, 'GET', `/admin/organizations${query}`, { headers });

  test('pages through a parent\'s sub-organizations oldest first, with the total, and never a key', async () => {
    const parent = await createOrg(r.url, `lister ${crypto.randomUUID()}`);
    const children = [];
    for (const n of ['a', 'b', 'c']) children.push(await createOrg(r.url, `child ${n}`, { parent_id: parent.id }));
    const view = (o: { id: string; name: string; parent_id?: string | null; created_at: string }) => ({ id: o.id, name: o.name, parent_id: o.parent_id ?? null, created_at: o.created_at });

    const first = await list(`?parent_id=${parent.id.toUpperCase()}&limit=2`);
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ organizations: children.slice(0, 2).map(view), pagination: { limit: 2, offset: 0, total_count: 3 } });
    const rest = await list(`?parent_id=${parent.id}&limit=2&offset=2`);
    expect(rest.body).toEqual({ organizations: children.slice(2).map(view), pagination: { limit: 2, offset: 2, total_count: 3 } });
    expect(JSON.stringify([first.body, rest.body])).not.toContain('sidk_');

    // By its exact name (a lost id is found again), and the whole list holds it too.
    const byName = await list(`?name=${encodeURIComponent(parent.name)}`);
    expect(byName.body).toEqual({ organizations: [view(parent)], pagination: { limit: 50, offset: 0, total_count: 1 } });
    const all = await list('?limit=200');
    expect(all.body.pagination.total_count).toBeGreaterThanOrEqual(4);
    expect(all.body.organizations.map((o: { id: string }) => o.id)).toEqual(expect.arrayContaining([parent.id, ...children.map((c) => c.id)]));
  });

  test('the page and total_count are read at one moment: a delete committed while the list is read changes neither alone', async () => {
    const parent = await createOrg(r.url, `snapshot ${crypto.randomUUID()}`);
    const ids: string[] = [];
    for (const n of ['a', 'b', 'c']) ids.push((await createOrg(r.url, `snapshot ${n}`, { parent_id: parent.id })).id);
    // The list's reads of these organizations run one after the other, and the first one done lets a delete
    // commit before the next starts: the moment a concurrent write can land between two statements, made certain.
    const { result: during, written } = await withWriteAfterFirstRead(
      poolOf(r.region.adminDb),
      (q) => q.text.includes('organizations') && q.values.includes(parent.id),
      { text: 'UPDATE organizations SET deleted_at = now() WHERE id = $1::uuid', values: [ids[0]] },
      () => list(`?parent_id=${parent.id}`),
    );
    expect(written).toBe(true);
    // Before the delete (3 of 3): the page and its count agree. Two statements answered 3 listed of 2.
    const listed = (res: { body: { organizations: { id: string }[]; pagination: { total_count: number } } }) => ({
      listed: res.body.organizations.map((o) => o.id),
      total: res.body.pagination.total_count,
    });
    expect(listed(during)).toEqual({ listed: ids, total: 3 });
    expect(listed(await list(`?parent_id=${parent.id}`))).toEqual({ listed: ids.slice(1), total: 2 });
    // Past the end, the count still comes with the empty page.
    expect((await list(`?parent_id=${parent.id}&offset=5`)).body).toEqual({ organizations: [], pagination: { limit: 50, offset: 5, total_count: 2 } });
  });

  test('a deleted organization is not listed', async () => {
    const org = await createOrg(r.url, `gone ${crypto.randomUUID()}`);
    expect((await list(`?name=${encodeURIComponent(org.name)}`)).body.pagination.total_count).toBe(1);
    await r.region.db.$executeRawUnsafe('UPDATE organizations SET deleted_at = now() WHERE id = $1::uuid', org.id);
    expect((await list(`?name=${encodeURIComponent(org.name)}`)).body).toEqual({ organizations: [], pagination: { limit: 50, offset: 0, total_count: 0 } });
  });

  test.each([
    ['?limit=0', "limit must be a whole number from 1 to 200 (got '0'); leave it out for 50."],
    ['?offset=-1', "offset must be a whole number from 0 to 999999999 (got '-1'); leave it out for 0."],
    ['?parent_id=nope', "parent_id must be an organization id, a UUID (got 'nope')."],
    ['?name=a&name=b', 'The query parameter name is given more than once; give it once, a name of 1 to 200 characters.'],
    [
      '?page=2',
      "Unknown query parameter 'page'. The list takes limit (a whole number from 1 to 200, default 50), offset (from 0 to 999999999, default 0), parent_id (an organization id, a UUID) and name (a name of 1 to 200 characters).",
    ],
  ])('%s is a 400 that says what the list takes', async (query, message) => {
    const res = await list(query);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: 400, message }] });
  });

  test('needs the admin token', async () => {
    expect((await list('', {})).status).toBe(401);
  });
});

describe('admin GET routes that take no query parameters', () => {
  const id = '01a20904-0000-7000-8000-000000000000';
  // Each of them (the list above takes its own); a misspelt parameter was ignored, answered 200.
  test.each([
    '/admin/organizations/{id}',
    '/admin/metadata-refresh',
    '/admin/replication',
    '/admin/replication/digest',
    '/admin/replication/changes/{id}',
    '/admin/replication/parked/discarded/{id}',
    '/admin/deployment',
  ])('GET %s?x=1 is a 400 naming the parameter, in the admin envelope; without it, not a 400', async (route) => {
    const path = route.replace('{id}', id);
    const res = await call(r.url, 'GET', `${path}?x=1&limit=2`, { headers: adminHeaders });
    expect({ status: res.status, body: res.body }).toEqual({ status: 400, body: { meta: {}, errors: [{ httpcode: 400, message: `Unknown query parameter 'x'. GET ${path} takes no query parameters.` }] } });
    // Behind the admin token, as before.
    expect((await call(r.url, 'GET', `${path}?x=1`, {})).status).toBe(401);
    expect((await call(r.url, 'GET', path, { headers: adminHeaders })).status).not.toBe(400);
  });
});

describe('API keys', () => {
  test('rotation issues a new key and the previous one stops working', async () => {
    const org = await createOrg(r.url, 'rotating');
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders(org) })).status).toBe(200);
    const rotated = await call(r.url, 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: adminHeaders });
    expect(rotated.status).toBe(201);
    expect(rotated.body).toEqual({ api_key: expect.stringMatching(/^sidk_/) });
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders(org) })).status).toBe(401);
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: rotated.body.api_key }) })).status).toBe(200);
  });

  test('a rotation sent with a body other than nothing, {} or null is a 400 and rotates nothing', async () => {
    const org = await createOrg(r.url, 'rotation body');
    const rotate = (rawBody: string | undefined, type = 'application/json') =>
      call(r.url, 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: { ...adminHeaders, ...(rawBody === undefined ? {} : { 'content-type': type }) }, rawBody });
    for (const [body, type] of [['{bad', 'application/json'], ['hi', 'text/plain'], ['{"revoke_old":false}', 'application/json'], ['[]', 'application/json'], ['{', 'application/json']] as const) {
      const res = await rotate(body, type);
      expect(res.status).toBe(400);
      const bytes = Buffer.byteLength(body);
      expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: 400, message: `This operation takes no request body; send none (or {}), not ${bytes === 1 ? '1 byte' : `${bytes} bytes`} of something else.` }] });
    }
    // Nothing was rotated: the organization's one key still works.
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders(org) })).status).toBe(200);
    let key = org.api_key;
    for (const body of [undefined, '', '{}', ' { } ', 'null']) {
      const res = await rotate(body);
      expect(res.status).toBe(201);
      expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: key }) })).status).toBe(401);
      key = res.body.api_key;
      expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: key }) })).status).toBe(200);
    }
  });

  test('a DELETE sent with a body that is not empty JSON is a 400 and deletes nothing', async () => {
    const org = await createOrg(r.url, 'delete body');
    const created = await call(r.url, 'POST', LIST, { headers: slashidHeaders(org), body: { idp_metadata_url: `http://${idp.hostPort}/okta.xml` } });
    expect(created.status).toBe(201);
    const one = `${LIST}/${created.body.result.id}`;
    const refused = await call(r.url, 'DELETE', one, { headers: { ...slashidHeaders(org), 'content-type': 'application/json' }, rawBody: '{"force":true}' });
    expect(refused.status).toBe(400);
    expect(refused.body.errors[0].message).toMatch(/^This operation takes no request body/);
    expect((await call(r.url, 'GET', one, { headers: slashidHeaders(org) })).status).toBe(200);
    expect((await call(r.url, 'DELETE', one, { headers: { ...slashidHeaders(org), 'content-type': 'application/json' }, rawBody: '{}' })).status).toBe(204);
    expect((await call(r.url, 'GET', one, { headers: slashidHeaders(org) })).status).toBe(404);
  });

  test("a key's id with any other secret is refused, whether or not the key was just used (its hash is compared)", async () => {
    const org = await createOrg(r.url, 'forged');
    const [id, secret] = org.api_key.split('.') as [string, string];
    const other = (s: string) => `${id}.${s}`;
    // Well-formed: another random secret, and the real one with its last character changed.
    const forgeries = [other(crypto.randomBytes(32).toString('base64url')), other(secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A'))];
    // Before the key was ever looked up, and after (the region keeps looked-up keys in memory).
    for (const forged of forgeries) expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: forged }) })).status).toBe(401);
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders(org) })).status).toBe(200);
    for (const forged of forgeries) {
      const res = await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: forged }) });
      expect(res.status).toBe(401);
      expect(res.body.errors[0].message).toBe('The API key in SlashID-API-Key is not valid here: it is not a current key of an organization this region holds. A key created or rotated in another region moments ago may not have reached this one yet (a create or rotation with all_regions answers once every region has it).');
    }
  });

  test('a key of an organization that was deleted is refused, though the key row itself is live', async () => {
    // No API deletes an organization yet; a tombstone can still arrive by hand or from a later feature, and
    // the key check must not depend on its keys having been tombstoned with it.
    const org = await createOrg(r.url, 'deleted org');
    await r.region.db.$executeRawUnsafe('UPDATE organizations SET deleted_at = now() WHERE id = $1::uuid', org.id);
    const res = await call(r.url, 'GET', LIST, { headers: slashidHeaders(org) });
    expect(res.status).toBe(401);
    expect(res.body.errors[0].message).toBe('The API key in SlashID-API-Key is not valid here: it is not a current key of an organization this region holds. A key created or rotated in another region moments ago may not have reached this one yet (a create or rotation with all_regions answers once every region has it).');
  });

  test('rotation for an unknown organization answers 404', async () => {
    const res = await call(r.url, 'POST', '/admin/organizations/01a20904-0000-7000-8000-000000000000/api-keys', { headers: adminHeaders });
    expect(res.status).toBe(404);
    // Worded as the read's 404 (it said "does not exist").
    expect(res.body.errors[0].message).toBe('Organization 01a20904-0000-7000-8000-000000000000 not found.');
    expect((await call(r.url, 'GET', '/admin/organizations/01a20904-0000-7000-8000-000000000000', { headers: adminHeaders })).body.errors[0].message).toBe(res.body.errors[0].message);
  });

  test("a parent's key works for its sub-organizations, but not the other way round", async () => {
    const parent = await createOrg(r.url, 'p');
    const child = await createOrg(r.url, 'c', { parent_id: parent.id });
    const grandchild = await createOrg(r.url, 'g', { parent_id: child.id });
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: grandchild.id, api_key: parent.api_key }) })).status).toBe(200);
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: child.id, api_key: parent.api_key }) })).status).toBe(200);
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: parent.id, api_key: child.api_key }) })).status).toBe(403);
  });

  test("a parent's key acts on the sub-organization SlashID-OrgID names: what it creates there is the child's, not the parent's", async () => {
    const parent = await createOrg(r.url, 'acting parent');
    const child = await createOrg(r.url, 'acted-on child', { parent_id: parent.id });
    const made = await call(r.url, 'POST', LIST, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'for the child' }, headers: slashidHeaders({ id: child.id, api_key: parent.api_key }) });
    expect(made.status).toBe(201);
    const owned = (where: string) => r.region.db.samlProviderCredential.count({ where: { orgId: where, deletedAt: null } });
    expect(await owned(child.id)).toBe(1);
    expect(await owned(parent.id)).toBe(0);
    const childList = await call(r.url, 'GET', LIST, { headers: slashidHeaders(child) });
    expect(childList.body.result.map((c: { id: string }) => c.id)).toEqual([made.body.result.id]);
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders(parent) })).body.result).toEqual([]);
  });

  test("an organization follows its own change with SlashID-OrgID in either case; another organization's key learns nothing of it", async () => {
    const org = await createOrg(r.url, 'follows its change');
    const made = await call(r.url, 'POST', LIST, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'followed' }, headers: slashidHeaders(org) });
    expect(made.status).toBe(201);
    const change = made.headers.get('x-change-id');
    const follow = (headers: Record<string, string>) => call(r.url, 'GET', `/organizations/replication/changes/${change}`, { headers });
    // A UUID's hex digits may come in either case; the organization's changes are recorded under the lower-case id.
    for (const orgId of [org.id, org.id.toUpperCase()]) {
      const own = await follow(slashidHeaders(org, { 'SlashID-OrgID': orgId }));
      expect(own.status).toBe(200);
      expect(own.body.result).toMatchObject({ change_id: change });
    }
    const stranger = await follow(slashidHeaders(await createOrg(r.url, 'stranger')));
    expect(stranger.status).toBe(404);
  });

  test("a parent follows a sub-organization's change with its own SlashID-OrgID (its key may act there); a child does not see its parent's", async () => {
    const parent = await createOrg(r.url, 'follows its child');
    const child = await createOrg(r.url, 'followed child', { parent_id: parent.id });
    const follow = (change: string | null, as: { id: string; api_key: string }) => call(r.url, 'GET', `/organizations/replication/changes/${change}`, { headers: slashidHeaders(as) });
    const childs = await call(r.url, 'POST', LIST, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'the child' }, headers: slashidHeaders(child) });
    expect(childs.status).toBe(201);
    const seen = await follow(childs.headers.get('x-change-id'), parent);
    expect(seen.status).toBe(200);
    expect(seen.body.result).toMatchObject({ change_id: childs.headers.get('x-change-id') });
    const parents = await call(r.url, 'POST', LIST, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'the parent' }, headers: slashidHeaders(parent) });
    expect(parents.status).toBe(201);
    const hidden = await follow(parents.headers.get('x-change-id'), { id: child.id, api_key: child.api_key });
    expect(hidden.status).toBe(404);
    // Not a sibling's either.
    const sibling = await createOrg(r.url, 'sibling', { parent_id: parent.id });
    expect((await follow(childs.headers.get('x-change-id'), sibling)).status).toBe(404);
  });

  test('a rotation revokes every live key of the organization: both keys two concurrent rotations left', async () => {
    const org = await createOrg(r.url, 'two live keys');
    // The second live key a rotation in another region, concurrent with this region's last, would leave.
    const other = generateApiKey();
    await r.region.db.$executeRawUnsafe(
      `INSERT INTO api_keys (key_id, org_id, key_hash, created_at, updated_at, version, created_version, origin_region)
       SELECT $1, org_id, $2, created_at, updated_at, version, created_version, origin_region FROM api_keys WHERE org_id = $3::uuid`,
      other.keyId,
      other.keyHash,
      org.id,
    );
    const before = [org.api_key, other.apiKey];
    for (const key of before) expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: key }) })).status).toBe(200);
    const rotated = await call(r.url, 'POST', `/admin/organizations/${org.id}/api-keys`, { headers: adminHeaders });
    expect(rotated.status).toBe(201);
    for (const key of before) expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: key }) })).status).toBe(401);
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders({ id: org.id, api_key: rotated.body.api_key }) })).status).toBe(200);
  });
});

describe('nesting', () => {
  test('a root\'s key reaches its organizations at the deepest level allowed; one below that is not created', async () => {
    const root = await createOrg(r.url, 'depth-root');
    let parent = root.id;
    for (let level = 1; level <= MAX_ORG_DEPTH; level++) parent = (await createOrg(r.url, `depth-${level}`, { parent_id: parent })).id;
    // Before: created 65 levels down, and the root's key refused there (its ancestors were walked 64 up).
    const deeper = await call(r.url, 'POST', '/admin/organizations', { body: { name: 'too deep', parent_id: parent }, headers: adminHeaders });
    expect(deeper.status).toBe(400);
    expect(deeper.body).toEqual({ meta: {}, errors: [{ httpcode: 400, message: expect.stringContaining(`at most ${MAX_ORG_DEPTH} levels`) }] });
    expect((await call(r.url, 'GET', LIST, { headers: slashidHeaders(root, { 'SlashID-OrgID': parent }) })).status).toBe(200);
  });
});
