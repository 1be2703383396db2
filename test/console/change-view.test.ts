/**
 * The console's "Follow a change" in Chromium, for the two states a change's status gained: a parked change
 * an operator discarded in this region, and a create that lost only its Idempotency-Key record. One region in
 * the test process (real HTTP, Postgres and Redis); us-iowa's part (its event, its ack) is written as that
 * region would write it.
 */
import type { Browser, Page } from 'playwright-core';
import { idempotencyRowId } from '../../src/idempotency/request';
import { CREATE_ENDPOINT } from '../../src/provider-credentials/routes';
import { createRedis, replicationKeys, type Redis } from '../../src/redis';
import { formatVersion } from '../../src/replication/hlc';
import { eventFor, ORIGIN, REGION } from '../support/applier-rig';
import { launchChromium } from '../support/chromium';
import { ADMIN_TOKEN, REDIS_URL, testEventAuth } from '../support/env';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';

let region: InProcessRegion;
let idp: IdpServer;
let redis: Redis;
let browser: Browser;
let page: Page;
const keys = () => replicationKeys(region.deployment.file.redisKeyPrefix);

beforeAll(async () => {
  idp = await startIdpServer();
  [region, browser] = await Promise.all([startInProcess('console-change', [ORIGIN, REGION], { metadataAllowedHosts: [idp.hostPort] }, REGION), launchChromium()]);
  redis = createRedis(REDIS_URL, 'console-change-test');
  page = await browser.newPage();
  await page.goto(`${region.url}/admin/console`);
  await page.fill('#token', ADMIN_TOKEN);
  await page.click('#login button[type=submit]');
}, 60_000);
afterAll(async () => {
  await browser?.close();
  redis?.disconnect();
  await region?.stop();
  await idp?.close();
});

async function follow(changeId: string, state: string): Promise<void> {
  await page.fill('#change-id', changeId);
  await page.click('#follow button[type=submit]');
  await page.waitForSelector(`[data-change-state="${state}"]`, { timeout: 10_000 });
}
const regionState = (region: string) => page.getAttribute(`#change-regions tr[data-region="${region}"]`, 'data-state');

test('a change discarded in this region reads discarded there, not pending', async () => {
  // us-iowa's change of a table this region does not have: parked here, then discarded by an operator.
  const event = eventFor('gadgets', 'g1', { id: 'g1' });
  await redis.xadd(keys().inbox(REGION), '*', ...testEventAuth().entryFields(event));
  const parked = async () => (await call(region.url, 'GET', '/admin/replication', { headers: adminHeaders })).body.failures?.parked === 1;
  expect(await eventually(parked, 10_000)).toBe(true);
  const discard = await call(region.url, 'POST', '/admin/replication/parked/discard', { headers: adminHeaders, body: { change_ids: [event.changeId] } });
  expect(discard.body.discarded).toHaveLength(1);
  await redis.hset(keys().ack(event.changeId), ORIGIN, `applied@${new Date().toISOString()}`);

  await follow(event.changeId, 'discarded');
  expect(await regionState(REGION)).toBe('discarded');
  expect(await regionState(ORIGIN)).toBe('applied');
  expect(await page.$('#change-idempotency-key')).toBeNull();
});

test("a create that lost only its Idempotency-Key record shows the status's message: the winner and what a retry answers", async () => {
  const org = await createOrg(region.url, 'acme');
  const key = 'sent-to-two-regions';
  const path = '/organizations/sso/saml/provider-credentials';
  const created = await call(region.url, 'POST', path, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'Okta' }, headers: slashidHeaders(org, { 'Idempotency-Key': key }) });
  expect(created.status).toBe(201);
  const changeId = created.headers.get('x-change-id') ?? '';
  // us-iowa held the same key from its own create, a second earlier: this change's key row lost there.
  const version = formatVersion({ wall: Date.now() - 1000, counter: 0, region: ORIGIN });
  await redis.hset(keys().ack(changeId), ORIGIN, `superseded:idempotency_keys:${idempotencyRowId(org.id, CREATE_ENDPOINT, key)}:${version}@${new Date().toISOString()}`);

  await follow(changeId, 'complete');
  const status = (await call(region.url, 'GET', `/admin/replication/changes/${changeId}`, { headers: adminHeaders })).body;
  expect(await page.textContent('#change-idempotency-key')).toBe(status.idempotency_key.message);
  expect(status.idempotency_key.message).toContain(`at the same time to ${ORIGIN}`);
  expect([await regionState(REGION), await regionState(ORIGIN)]).toEqual(['applied', 'applied']);
});
