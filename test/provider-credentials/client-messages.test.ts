/**
 * What a client of the SlashID dialect is told when it meets: a header its library or a proxy repeated (Node
 * joins a repeated header with ", ", so a repeat reads as one malformed value unless counted); and a region
 * that does not hold yet what another region made moments ago (a sub-organization: 403; a credential: 404).
 */
import { randomUUID } from 'node:crypto';
import { call, createOrg, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { rawExchangeWith } from '../support/raw-http';
import { TEST_TLS_CERT } from '../metadata/support/tls-material';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let org: { id: string; api_key: string };

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('slashid-messages', ['us-iowa', 'europe-belgium'], { metadataAllowedHosts: [idp.hostPort] });
  org = await createOrg(r.url, 'headers');
});
afterAll(async () => {
  await r.stop();
  await idp.close();
});

const count = () => r.region.db.samlProviderCredential.count({ where: { orgId: org.id, deletedAt: null } });

/** The two headers every call carries, as header lines. */
const lines = () => [`SlashID-OrgID: ${org.id}`, `SlashID-API-Key: ${org.api_key}`];

/** A create written as bytes with `lines` among its headers (fetch would join a repeated header into one). */
async function rawCreate(lines: string[]): Promise<{ status: string; body: unknown }> {
  const json = JSON.stringify({ idp_metadata_url: idp.url('okta.xml') });
  const head = [
    `POST ${PATH} HTTP/1.1`, `Host: ${new URL(r.url).host}`, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(json)}`,
    ...lines, 'Connection: close',
  ].join('\r\n');
  const answer = await rawExchangeWith(Number(new URL(r.url).port), `${head}\r\n\r\n${json}`);
  return { status: answer.split('\r\n')[0] ?? '', body: JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) };
}

describe('a SlashID header sent twice is named as such, not as one malformed value, and nothing is written', () => {
  test.each<[string, () => string[], string, string]>([
    ['the same API key twice', () => [...lines(), `slashid-api-key: ${org.api_key}`], '401 Unauthorized', 'SlashID-API-Key is given 2 times; send it once.'],
    ['the organization twice', () => [`SlashID-OrgID: ${org.id}`, `SlashID-OrgID: ${org.id}`, `SlashID-API-Key: ${org.api_key}`], '400 Bad Request', 'SlashID-OrgID is given 2 times; send it once.'],
    ['the consistency level twice', () => [...lines(), 'SlashID-Required-Consistency: all_regions', 'SlashID-Required-Consistency: all_regions'], '400 Bad Request', 'SlashID-Required-Consistency is given 2 times; send it once.'],
    ['the timeout three times', () => [...lines(), 'SlashID-Required-Consistency-Timeout: 5', 'SlashID-Required-Consistency-Timeout: 5', 'SLASHID-REQUIRED-CONSISTENCY-TIMEOUT: 5'], '400 Bad Request', 'SlashID-Required-Consistency-Timeout is given 3 times; send it once.'],
  ])('%s', async (_n, headerLines, status, message) => {
    const before = await count();
    const res = await rawCreate(headerLines());
    const code = Number(status.slice(0, 3));
    expect(res).toEqual({ status: `HTTP/1.1 ${status}`, body: { meta: {}, errors: [{ httpcode: code, message }] } });
    expect(await count()).toBe(before);
  });

  test('each header once, in any case and with spaces around the value, creates', async () => {
    const res = await rawCreate([`slashid-orgid:   ${org.id.toUpperCase()}  `, `SLASHID-API-KEY:${org.api_key}`, 'slashid-required-consistency:  local_region ', 'SlashID-Required-Consistency-Timeout: 07']);
    expect(res.status).toBe('HTTP/1.1 201 Created');
  });
});

test("a parent's key on an organization this region does not hold says one may not have arrived yet, in the same words as for another's organization", async () => {
  const unrelated = await createOrg(r.url, 'unrelated');
  const notHere = randomUUID(); // as a sub-organization created in europe-belgium moments ago would be
  const messages: string[] = [];
  for (const id of [notHere, unrelated.id]) {
    const res = await call(r.url, 'GET', PATH, { headers: slashidHeaders({ id, api_key: org.api_key }) });
    expect(res.status).toBe(403);
    messages.push(String(res.body.errors[0].message).replace(id, '<org>'));
  }
  expect(messages[0]).toContain('may not have reached this one yet');
  expect(messages[0]).toContain('all_regions');
  // Nothing tells an organization that exists from one that does not.
  expect(messages[1]).toBe(messages[0]);
});

test("a credential id that is not here answers GET, PATCH and DELETE with one 404 that names a create elsewhere not arrived yet", async () => {
  const other = await createOrg(r.url, 'other');
  const body = { idp_metadata_url: idp.url('okta.xml') };
  const others = (await call(r.url, 'POST', PATH, { body, headers: slashidHeaders(other) })).body.result.id as string;
  const deleted = (await call(r.url, 'POST', PATH, { body, headers: slashidHeaders(org) })).body.result.id as string;
  expect((await call(r.url, 'DELETE', `${PATH}/${deleted}`, { headers: slashidHeaders(org) })).status).toBe(204);
  const messages = new Set<string>();
  for (const id of [randomUUID(), others, deleted]) {
    for (const [method, body] of [['GET', undefined], ['PATCH', { label: 'x' }], ['PATCH', { idp_metadata_url: idp.url('okta.xml') }], ['DELETE', undefined]] as const) {
      const res = await call(r.url, method, `${PATH}/${id}`, { body, headers: slashidHeaders(org) });
      expect({ method, status: res.status }).toEqual({ method, status: 404 });
      messages.add(String(res.body.errors[0].message).replace(id, '<id>'));
    }
  }
  // One message for each case: it tells nothing of other organizations' credentials.
  expect([...messages]).toEqual([expect.stringContaining('not found in this region')]);
  expect([...messages][0]).toContain('created in another region moments ago and not arrived here yet');
  expect((await call(r.url, 'GET', `${PATH}/${others}`, { headers: slashidHeaders(other) })).body.result.label).toBe('');
});

test('a trusted certificate pasted with the two characters \\n for its line breaks is a 400 naming them, and nothing is written', async () => {
  const before = await count();
  const escaped = TEST_TLS_CERT.trim().replace(/\n/g, '\\n');
  const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), idp_trusted_certificates: [escaped] }, headers: slashidHeaders(org) });
  expect(res.status).toBe(400);
  expect(res.body.errors[0].message).toMatch(/idp_trusted_certificates\.0 .*a backslash escape \("\\n" or "\\r", two characters\) where its line breaks belong/);
  expect(await count()).toBe(before);
});
