/**
 * The console's page in Chromium where an operator trips: a pasted token no HTTP header can carry, a login
 * while an answer to the previous token is still on its way, a region whose backlog could not be counted,
 * more failing metadata refreshes than the answer lists, expired metadata whose refreshes do not fail, a change
 * id the browser resolves as a path, a region one of whose status routes does not answer (its figure missing,
 * never shown as a good one), and a region's Redis judged by the answer's redis_down alone.
 * us-iowa runs in this process (real HTTP, Postgres, Redis); europe-belgium is configured but never started,
 * its address answered by a stand-in in the tests that need it up.
 */
import http from 'node:http';
import type { Browser, Page } from 'playwright-core';
import type { DeploymentStatus } from '../../src/console/schema';
import { createRedis, replicationKeys } from '../../src/redis';
import { startRegion, type RunningRegion } from '../../src/region';
import { launchChromium } from '../support/chromium';
import { ADMIN_TOKEN, createDeployment, FIXTURE_DATE, REDIS_URL, type TestDeployment } from '../support/env';
import { adminHeaders, call, createOrg, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { SET_VALID_UNTIL } from '../support/credential-rows';

let idp: IdpServer;
let deployment: TestDeployment;
let region: RunningRegion;
let base: string;
let browser: Browser;
beforeAll(async () => {
  idp = await startIdpServer();
  deployment = await createDeployment('console-edges', ['us-iowa', 'europe-belgium'], { metadataAllowedHosts: [idp.hostPort] }, {}, { absentDatabases: ['europe-belgium'] });
  const config = deployment.configFor('us-iowa');
  [region, browser] = await Promise.all([startRegion(config, { drainTimeoutMs: 5000 }), launchChromium()]);
  base = `http://127.0.0.1:${config.region.port}`;
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await region?.stop();
  await deployment?.cleanup();
  await idp?.close();
});

interface Opened {
  page: Page;
  errors: string[];
  /** Paths of the page's requests, in the order it made them. */
  asked: string[];
}

async function open(): Promise<Opened> {
  const page = await browser.newPage({ viewport: { width: 1180, height: 640 } });
  const errors: string[] = [];
  const asked: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => asked.push(new URL(r.url()).pathname));
  await page.goto(`${base}/admin/console`);
  return { page, errors, asked };
}

async function logIn(page: Page, token: string): Promise<void> {
  await page.fill('#token', token);
  await page.click('#login button[type=submit]');
}

async function openLoggedIn(): Promise<Opened> {
  const o = await open();
  await logIn(o.page, ADMIN_TOKEN);
  await o.page.waitForSelector('#regions tr[data-region="us-iowa"][data-state="up"]', { timeout: 20_000 });
  return o;
}

/** Everything the page did with answers it had before this point (a request of its own, answered after them). */
const settled = (page: Page) => page.evaluate(() => fetch('/healthz').then((r) => r.text()));

/** A region's row of GET /admin/deployment, as this region gathers it. */
const deploymentRow = async (id: string) =>
  (await call<DeploymentStatus>(base, 'GET', '/admin/deployment', { headers: adminHeaders })).body.regions.find((r) => r.id === id);

/** Creates a credential of `org` on the fixtures' keycloak.xml (201) and answers its id. */
async function keycloakCredential(org: { id: string; api_key: string }, label: string): Promise<string> {
  const res = await call(base, 'POST', '/organizations/sso/saml/provider-credentials', { body: { idp_metadata_url: idp.url('keycloak.xml'), label }, headers: slashidHeaders(org) });
  expect(res.status).toBe(201);
  return res.body.result.id as string;
}

test('a pasted token holding a character no HTTP header carries is refused at the login, the character named, not sent as if the region did not answer', async () => {
  const { page, errors, asked } = await open();
  // A zero-width space, as a chat or a document pastes it with the token (the field shows dots only).
  await logIn(page, `${ADMIN_TOKEN}\u200b`);
  await page.waitForSelector('#login-error:has-text("U+200B")', { timeout: 5000 });
  expect(await page.isVisible('#login')).toBe(true);
  expect(await page.isHidden('#console')).toBe(true);
  expect(await page.evaluate('sessionStorage.length')).toBe(0);
  await settled(page);
  expect(asked).not.toContain('/admin/deployment');
  expect(errors).toEqual([]);
  await page.close();
});

test("an answer to the token just forgotten is dropped: a mistyped token's late 401 does not log out the right one", async () => {
  const { page, errors } = await open();
  // The first /admin/deployment (the mistyped token's) is answered by the region at once, and its answer held
  // from the page until the right token is in, as a busy region would hold it.
  let release: () => Promise<void> = async () => undefined;
  const first = new Promise<number>((resolve) => {
    let seen = 0;
    void page.route('**/admin/deployment', async (route) => {
      if (seen++ > 0) return route.continue();
      const response = await route.fetch();
      release = () => route.fulfill({ response });
      resolve(response.status());
    });
  });
  await logIn(page, 'mistyped-admin-token-0123456789');
  expect(await first).toBe(401);
  await page.click('#forget');
  await logIn(page, ADMIN_TOKEN);
  await page.waitForSelector('#regions tr[data-region="us-iowa"][data-state="up"]', { timeout: 20_000 });

  await release();
  await settled(page);
  expect(await page.textContent('#login-error')).toBe('');
  expect(await page.isHidden('#login')).toBe(true);
  expect(await page.evaluate('sessionStorage.getItem("saml-console-admin-token")')).toBe(ADMIN_TOKEN);
  expect(errors).toEqual([]);
  await page.close();
});

test('a region whose backlog the serving region could not count shows no figure, not "null / null"', async () => {
  // europe-belgium never started: its consumer group does not exist, so neither figure is known.
  const d = (await call<DeploymentStatus>(base, 'GET', '/admin/deployment', { headers: adminHeaders })).body;
  expect(d.regions.find((r) => r.id === 'europe-belgium')?.backlog).toEqual({ undelivered: null, pending_acks: null });
  const { page, errors } = await openLoggedIn();
  const row = '#regions tr[data-region="europe-belgium"]';
  await page.waitForSelector(`${row}[data-state="down"]`);
  // Region, then State, Answer, Redis, Outbox, Backlog.
  expect(await page.textContent(`${row} td:nth-of-type(5)`)).toBe('—');
  expect(await page.textContent(row)).not.toContain('null');
  expect(errors).toEqual([]);
  await page.close();
});

const BELGIUM = 'europe-belgium';
const STALL = Symbol('never answers');
type Answers = Record<string, unknown>;

/** europe-belgium's GET /admin/replication as a region of this version answers it, with this stream status. */
const replicationAnswer = (stream: { connected: boolean; dead_letters: number; error: string | null }) => ({
  region: BELGIUM, applied: [], pending: [], stream,
  outbox: { unpublished: 0, unconfirmed: 0, oldest_unpublished_at: null }, failures: { failing: 0, parked: 0 }, waiting_requests: 0,
});

/** Runs `body` with europe-belgium's consumer group made, so that its backlog is counted (0 / 0); removed after. */
async function withBelgiumGroup(body: () => Promise<void>): Promise<void> {
  const redis = createRedis(REDIS_URL, 'console-edges-test', { queueWhileOffline: true });
  const inbox = replicationKeys(deployment.file.redisKeyPrefix).inbox(BELGIUM);
  try {
    await redis.xgroup('CREATE', inbox, BELGIUM, '$', 'MKSTREAM');
    await body();
  } finally {
    await redis.xgroup('DESTROY', inbox, BELGIUM).finally(() => redis.disconnect());
  }
}

/**
 * europe-belgium's status routes answered by a stand-in at its address, as a region of this version answers
 * them when all is well, but for `changed`: a body, a status code (a number) or STALL; closed after `body`.
 */
async function withStandIn(changed: Answers, body: () => Promise<void>): Promise<void> {
  const answers: Answers = {
    '/healthz': { status: 'ok', region: BELGIUM, redis: 'ready' },
    '/readyz': { ready: true, database: 'ok' },
    '/admin/replication': replicationAnswer({ connected: true, dead_letters: 0, error: null }),
    '/admin/metadata-refresh': { failing: 0, credentials: [] },
    ...changed,
  };
  const server = http.createServer((req, res) => {
    const answer = answers[req.url ?? ''];
    if (answer === STALL) return;
    if (typeof answer === 'number') return void res.writeHead(answer).end();
    res.writeHead(answer ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(answer ?? {}));
  });
  await new Promise<void>((resolve) => server.listen(deployment.configFor(BELGIUM).region.port, '127.0.0.1', resolve));
  try {
    await body();
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
const belgiumRow = `#regions tr[data-region="${BELGIUM}"]`;

test('a region whose /readyz does not answer is not shown up in green: its readiness is unknown, and its problem says why', async () => {
  await withStandIn({ '/readyz': STALL }, async () => {
    const { page, errors } = await openLoggedIn();
    // Rendered with the problem (its /healthz answered, its /readyz did not): that answer's state.
    await page.waitForSelector(`${belgiumRow}:has-text("/readyz: no answer within 1500 ms")`, { timeout: 20_000 });
    expect(await page.getAttribute(belgiumRow, 'data-state')).toBe('ready?');
    expect(await page.getAttribute(`${belgiumRow} td:nth-of-type(1)`, 'class')).toBe('warn');
    expect(errors).toEqual([]);
    await page.close();
  });
});

test('a ready region whose backlog the serving region could not count reads "lag?", not up: whether it lags is not known', async () => {
  await withStandIn({}, async () => {
    const row = await deploymentRow(BELGIUM);
    // Its consumer group does not exist (it never ran): neither figure is known, though all it says is well.
    expect(row).toMatchObject({ up: true, ready: true, backlog: { undelivered: null, pending_acks: null }, replication: { failing: 0, parked: 0 } });
    const { page, errors } = await openLoggedIn();
    // Every status answer read: its Problems cell (the tenth) is empty.
    await page.waitForSelector(`${belgiumRow}:has(td:nth-of-type(10):empty)`, { timeout: 20_000 });
    expect(await page.getAttribute(belgiumRow, 'data-state')).toBe('lag?');
    expect(await page.textContent(`${belgiumRow} td:nth-of-type(5)`)).toBe('—');
    expect(errors).toEqual([]);
    await page.close();
  });
});

test('a ready region whose replication status did not answer reads "lag?", not up: its failures, outbox and lag are not known', async () => {
  // Its consumer group, so that its backlog is counted (0 / 0): only its own replication status is missing.
  await withBelgiumGroup(async () => {
    await withStandIn({ '/admin/replication': 500 }, async () => {
      const { page, errors } = await openLoggedIn();
      await page.waitForSelector(`${belgiumRow}:has-text("/admin/replication answered 500")`, { timeout: 20_000 });
      expect(await page.textContent(`${belgiumRow} td:nth-of-type(5)`)).toBe('0 / 0');
      expect(await page.getAttribute(belgiumRow, 'data-state')).toBe('lag?');
      expect(await page.$$eval(`#lag td[data-region="${BELGIUM}"]`, (tds) => tds.map((td) => td.getAttribute('data-state')))).toEqual(['unknown']);
      expect(errors).toEqual([]);
      await page.close();
    });
  });
});

test('a ready region whose Redis does not answer reads "isolated" in red, though its backlog and lag read clean: nothing reaches it or leaves it', async () => {
  // Its consumer group, so that its backlog is counted (0 / 0) and every figure but its Redis reads well.
  await withBelgiumGroup(async () => {
    // The same stand-in first with its Redis ready: up, so that the state below is its Redis's alone.
    await withStandIn({}, async () => {
      const { page } = await openLoggedIn();
      await page.waitForSelector(`${belgiumRow}[data-state="up"]`, { timeout: 20_000 });
      await page.close();
    });
    await withStandIn({
      '/healthz': { status: 'ok', region: BELGIUM, redis: 'reconnecting' },
      '/admin/replication': replicationAnswer({ connected: false, dead_letters: 0, error: 'connect ECONNREFUSED 127.0.0.1:6390' }),
    }, async () => {
      const { page, errors } = await openLoggedIn();
      await page.waitForSelector(`${belgiumRow}:has-text("its Redis does not answer")`, { timeout: 20_000 });
      expect(await page.textContent(`${belgiumRow} td:nth-of-type(5)`)).toBe('0 / 0');
      expect(await page.getAttribute(belgiumRow, 'data-state')).toBe('isolated');
      expect(await page.getAttribute(`${belgiumRow} td:nth-of-type(1)`, 'class')).toBe('bad');
      expect(errors).toEqual([]);
      await page.close();
    });
  });
});

test("a region whose /healthz says its Redis does not answer, its stream status read, is isolated with that problem: the row and its problems follow one rule", async () => {
  await withStandIn({ '/healthz': { status: 'ok', region: BELGIUM, redis: 'not answering' } }, async () => {
    const { page, errors } = await openLoggedIn();
    // The page turned the row red on /healthz alone while the answer named no problem (it read the stream status only).
    await page.waitForSelector(`${belgiumRow}:has-text("its Redis does not answer (/healthz: not answering)")`, { timeout: 20_000 });
    expect(await page.getAttribute(belgiumRow, 'data-state')).toBe('isolated');
    const row = await deploymentRow(BELGIUM);
    expect(row).toMatchObject({ redis: 'not answering', redis_down: '/healthz: not answering', replication: { stream_connected: true } });
    expect(errors).toEqual([]);
    await page.close();
  });
});

test("the page's isolated state is the answer's redis_down alone, not its own reading of the Redis figures", async () => {
  // The serving region's real answer, with us-iowa's figures changed in flight: first redis_down alone set, then
  // every other Redis figure bad with redis_down null (a disagreement only a second rule could produce).
  let change = (r: DeploymentStatus['regions'][number]) => void Object.assign(r, { redis_down: 'stand-in reason' });
  const { page, errors } = await open();
  await page.route('**/admin/deployment', async (route) => {
    const response = await route.fetch();
    const d = (await response.json()) as DeploymentStatus;
    const iowa = d.regions.find((r) => r.id === 'us-iowa');
    if (iowa) change(iowa);
    await route.fulfill({ response, json: d });
  });
  await logIn(page, ADMIN_TOKEN);
  const iowaRow = '#regions tr[data-region="us-iowa"]';
  await page.waitForSelector(`${iowaRow}[data-state="isolated"]`, { timeout: 20_000 });
  change = (r) => {
    Object.assign(r, { redis: 'reconnecting', redis_down: null });
    if (r.replication) r.replication.stream_connected = false;
  };
  await page.waitForSelector(`${iowaRow}[data-state="up"]`, { timeout: 20_000 });
  expect(errors).toEqual([]);
  await page.close();
});

test('a region whose metadata refreshes could not be read is listed as not read, not counted in a green "none"', async () => {
  await withStandIn({ '/admin/metadata-refresh': 500 }, async () => {
    const { page, errors } = await openLoggedIn();
    await page.waitForSelector(`${belgiumRow}:has-text("/admin/metadata-refresh answered 500")`, { timeout: 20_000 });
    const items = await page.$$eval('#refresh-failures li', (lis) => lis.map((li) => [li.textContent, li.className]));
    expect(items).toEqual([[`${BELGIUM}: not read (its problems say why)`, 'warn']]);
    expect(errors).toEqual([]);
    await page.close();
  });
});

test('more failing metadata refreshes than the answer lists: the list says how many more, and where they are', async () => {
  const org = await createOrg(base, 'refreshing');
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) ids.push(await keycloakCredential(org, `c${i}`));
  await region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET consecutive_failures = 3, last_error = 'unreachable' WHERE credential_id = ANY($1::uuid[])", ids);
  const { page, errors } = await openLoggedIn();
  await page.waitForSelector('#refresh-failures li[data-more]', { timeout: 10_000 });
  // Five listed (what /admin/deployment carries), and the other two counted.
  const items = await page.$$eval('#refresh-failures li', (lis) => lis.map((li) => li.textContent ?? ''));
  expect(items.filter((t) => t.includes(idp.url('keycloak.xml')))).toHaveLength(5);
  expect(items[5]).toBe('us-iowa: 2 more failing (GET /admin/metadata-refresh on us-iowa lists them)');
  expect(await page.textContent('#regions tr[data-region="us-iowa"] td:nth-of-type(9)')).toBe('7');
  expect(errors).toEqual([]);
  await page.close();
});

test("a failing credential whose metadata expired is listed in red with when it expired (/admin/metadata-refresh's expired_since)", async () => {
  const org = await createOrg(base, 'expiring');
  const id = await keycloakCredential(org, 'expiring');
  // Its refreshes failed until its validUntil passed: an hour before the fixtures' date, the region's metadata clock.
  const expired = new Date(Date.parse(FIXTURE_DATE) - 3600_000).toISOString();
  await region.db.$executeRawUnsafe(SET_VALID_UNTIL, id, expired);
  // More failures than the others (listed first, so among the five shown).
  await region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET consecutive_failures = 9, last_error = 'unreachable' WHERE credential_id = $1::uuid", id);
  const d = (await call<DeploymentStatus>(base, 'GET', '/admin/deployment', { headers: adminHeaders })).body;
  const failures = d.regions.find((r) => r.id === 'us-iowa')?.metadata_refresh?.failures ?? [];
  expect(failures[0]).toMatchObject({ credential_id: id, expired_since: expired });
  expect(failures.slice(1).every((f) => f.expired_since === null)).toBe(true);

  const { page, errors } = await openLoggedIn();
  await page.waitForSelector('#refresh-failures li[data-expired-since]', { timeout: 10_000 });
  const items = await page.$$eval('#refresh-failures li', (lis) => lis.map((li) => [li.textContent, li.className, li.getAttribute('data-expired-since')]));
  expect(items[0]).toEqual([`us-iowa: ${idp.url('keycloak.xml')} — 9 failures, last: unreachable; its metadata expired at ${expired} (sign-ins refused)`, 'bad', expired]);
  // The others, current, say nothing of it.
  expect(items.slice(1).filter(([text]) => text?.includes('expired'))).toEqual([]);
  expect(errors).toEqual([]);
  await page.close();
});

test('a failing credential whose metadata expired, beyond the five listed, is counted once: among the failing ones, said to have expired, not again among the expired', async () => {
  const org = await createOrg(base, 'expiring-unlisted');
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await keycloakCredential(org, `u${i}`));
  const [unlisted, ...others] = ids as [string, ...string[]];
  await region.db.$executeRawUnsafe(SET_VALID_UNTIL, unlisted, new Date(Date.parse(FIXTURE_DATE) - 3600_000).toISOString());
  // Five others fail more often: listed ahead of it, so it is one of those counted on the "more failing" line.
  await region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET consecutive_failures = 2, last_error = 'unreachable' WHERE credential_id = ANY($1::uuid[])", others);
  await region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET consecutive_failures = 1, last_error = 'unreachable' WHERE credential_id = $1::uuid", unlisted);
  // The region counts the failing ones whose metadata expired (here every one is listed: fewer than 500).
  const admin = (await call<{ failing_expired: number; credentials: { consecutive_failures: number; expired_since: string | null }[] }>(base, 'GET', '/admin/metadata-refresh', { headers: adminHeaders })).body;
  expect(admin.failing_expired).toBe(admin.credentials.filter((c) => c.consecutive_failures > 0 && c.expired_since !== null).length);
  const meta = (await deploymentRow('us-iowa'))?.metadata_refresh;
  if (!meta) throw new Error('us-iowa: no metadata_refresh');
  expect(meta.failures.map((f) => f.credential_id)).not.toContain(unlisted);
  expect(meta.failing_expired).toBe(admin.failing_expired);
  expect(meta).not.toHaveProperty('failing_expired_is_bound');
  const more = meta.failing - meta.failures.length;
  const moreExpired = meta.failing_expired - meta.failures.filter((f) => f.expired_since !== null).length;
  expect(moreExpired).toBeGreaterThanOrEqual(1);
  // Every expired one not failing is listed: nothing more to count.
  expect(meta.expired - meta.failing_expired).toBe(meta.expired_credentials.length);

  const { page, errors } = await openLoggedIn();
  await page.waitForSelector('#refresh-failures li[data-more]', { timeout: 10_000 });
  await settled(page);
  expect(await page.textContent('#refresh-failures li[data-more]')).toBe(`us-iowa: ${more} more failing (${moreExpired} of them expired: sign-ins refused; GET /admin/metadata-refresh on us-iowa lists them)`);
  expect(await page.getAttribute('#refresh-failures li[data-more]', 'data-more-failing-expired')).toBe(String(moreExpired));
  // Not counted again as expired (the line said "1 more whose metadata expired" of the same credential).
  expect(await page.$$eval('#refresh-failures li[data-more-expired]', (lis) => lis.map((li) => li.textContent))).toEqual([]);
  expect(errors).toEqual([]);
  await page.close();
});

test("a region's expired_since is shown as text, whatever it holds", async () => {
  const hostile = '<img src=x onerror="window.injected=1">';
  const credential = { credential_id: 'c1', idp_metadata_url: 'https://idp.example/md', last_error: 'unreachable', consecutive_failures: 2, last_success_at: null, expired_since: hostile };
  await withStandIn({ '/admin/metadata-refresh': { failing: 1, credentials: [credential] } }, async () => {
    const { page, errors } = await openLoggedIn();
    const item = `#refresh-failures li:has-text("${BELGIUM}: https://idp.example/md")`;
    await page.waitForSelector(item, { timeout: 20_000 });
    expect(await page.textContent(item)).toContain(`its metadata expired at ${hostile} (sign-ins refused)`);
    expect(await page.$('#refresh-failures img')).toBeNull();
    expect(await page.evaluate('window.injected')).toBeUndefined();
    expect(errors).toEqual([]);
    await page.close();
  });
});

test('a credential whose metadata expired while its refreshes do not fail is listed in red with when it expired (it was listed nowhere)', async () => {
  const org = await createOrg(base, 'expired-quietly');
  const id = await keycloakCredential(org, 'expired quietly');
  const expired = new Date(Date.parse(FIXTURE_DATE) - 7200_000).toISOString();
  await region.db.$executeRawUnsafe(SET_VALID_UNTIL, id, expired);
  // Its refresh not due for a day (its schedule put off, or the refresher stopped): no failure to list it by.
  await region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET consecutive_failures = 0, last_error = NULL, next_at = now() + interval '1 day' WHERE credential_id = $1::uuid", id);
  const meta = (await deploymentRow('us-iowa'))?.metadata_refresh;
  const listed = meta?.expired_credentials ?? [];
  expect(listed.map((c) => [c.credential_id, c.expired_since, c.held_since])).toEqual([[id, expired, null]]);
  const nextAt = listed[0]?.next_at ?? '';
  expect(Date.parse(nextAt)).toBeGreaterThan(Date.now() + 3600_000);
  // Counted with the failing ones that expired (those of them listed among the failures, with their expired_since).
  expect(meta?.expired).toBe((meta?.failing_expired ?? NaN) + 1);

  const { page, errors } = await openLoggedIn();
  const item = `#refresh-failures li[data-expired-since="${expired}"]`;
  await page.waitForSelector(item, { timeout: 10_000 });
  expect(await page.textContent(item)).toBe(`us-iowa: ${idp.url('keycloak.xml')} — its metadata expired at ${expired} (sign-ins refused); its refreshes do not fail; the next is due at ${nextAt}`);
  expect(await page.getAttribute(item, 'class')).toBe('bad');
  expect(errors).toEqual([]);
  await page.close();
});

test('expired credentials not failing: the first five listed (a held one says so), the others counted, every string shown as text', async () => {
  const hostile = '<img src=x onerror="window.injected=1">';
  const credential = (i: number) => ({
    credential_id: `c${i}`, idp_metadata_url: `https://idp.example/md${i}`, last_error: null, consecutive_failures: 0, last_success_at: null,
    expired_since: i === 0 ? hostile : '2026-11-01T00:00:00.000Z', held_since: i === 1 ? hostile : null, next_at: '2026-12-01T00:00:00.000Z',
  });
  const credentials = Array.from({ length: 7 }, (_, i) => credential(i));
  await withStandIn({ '/admin/metadata-refresh': { failing: 0, credentials } }, async () => {
    const row = await deploymentRow(BELGIUM);
    expect(row?.metadata_refresh).toMatchObject({ failing: 0, failures: [], expired: 7 });
    expect(row?.metadata_refresh?.expired_credentials.map((c) => c.credential_id)).toEqual(['c0', 'c1', 'c2', 'c3', 'c4']);

    const { page, errors } = await openLoggedIn();
    await page.waitForSelector('#refresh-failures li[data-more-expired]', { timeout: 20_000 });
    const items = await page.$$eval('#refresh-failures li', (lis) => lis.map((li) => [li.textContent ?? '', li.className]));
    const belgium = items.filter(([text]) => text.startsWith(`${BELGIUM}:`));
    expect(belgium).toEqual([
      [`${BELGIUM}: https://idp.example/md0 — its metadata expired at ${hostile} (sign-ins refused); its refreshes do not fail; the next is due at 2026-12-01T00:00:00.000Z`, 'bad'],
      [`${BELGIUM}: https://idp.example/md1 — its metadata expired at 2026-11-01T00:00:00.000Z (sign-ins refused); a newer document is held since ${hostile} (an operator accepts it: POST /admin/metadata-refresh/c1/accept)`, 'bad'],
      ...[2, 3, 4].map((i) => [`${BELGIUM}: https://idp.example/md${i} — its metadata expired at 2026-11-01T00:00:00.000Z (sign-ins refused); its refreshes do not fail; the next is due at 2026-12-01T00:00:00.000Z`, 'bad']),
      [`${BELGIUM}: 2 more whose metadata expired while their refreshes do not fail (GET /admin/metadata-refresh on ${BELGIUM} lists the first 500 credentials, with expired_since)`, 'bad'],
    ]);
    expect(await page.$('#refresh-failures img')).toBeNull();
    expect(await page.evaluate('window.injected')).toBeUndefined();
    expect(errors).toEqual([]);
    await page.close();
  });
});

/** A not-failing credential of a stand-in's GET /admin/metadata-refresh, expired when `expired` (its refresh not due). */
const quiet = (i: number, expired: boolean) => ({
  credential_id: `q${i}`, idp_metadata_url: `https://idp.example/q${i}`, last_error: null, consecutive_failures: 0, last_success_at: null,
  expired_since: expired ? '2026-11-01T00:00:00.000Z' : null, held_since: null, next_at: '2026-12-01T00:00:00.000Z',
});

test("a region's count of expired credentials is the console's, beyond the ones it lists", async () => {
  // It lists 500 (here fewer, as a region whose others are current), and counts every expired one.
  const credentials = Array.from({ length: 9 }, (_, i) => quiet(i, i < 6));
  await withStandIn({ '/admin/metadata-refresh': { failing: 0, expired: 640, credentials } }, async () => {
    const row = await deploymentRow(BELGIUM);
    expect(row?.metadata_refresh).toMatchObject({ failing: 0, expired: 640 });
    expect(row?.metadata_refresh).not.toHaveProperty('expired_is_bound');
    expect(row?.metadata_refresh?.expired_credentials).toHaveLength(5);

    const { page, errors } = await openLoggedIn();
    const more = `#refresh-failures li[data-more-expired]:has-text("${BELGIUM}:")`;
    await page.waitForSelector(more, { timeout: 20_000 });
    expect(await page.textContent(more)).toBe(`${BELGIUM}: 635 more whose metadata expired while their refreshes do not fail (GET /admin/metadata-refresh on ${BELGIUM} lists the first 500 credentials, with expired_since)`);
    expect(await page.getAttribute(more, 'data-expired-bound')).toBeNull();
    expect(errors).toEqual([]);
    await page.close();
  });
});

test('a region of a version that does not count its expired credentials: those among the 500 it lists, said to be a lower bound', async () => {
  const credentials = Array.from({ length: 500 }, (_, i) => quiet(i, i % 50 === 0));
  await withStandIn({ '/admin/metadata-refresh': { failing: 0, credentials } }, async () => {
    const row = await deploymentRow(BELGIUM);
    expect(row?.metadata_refresh).toMatchObject({ failing: 0, expired: 10, expired_is_bound: true });

    const { page, errors } = await openLoggedIn();
    const more = `#refresh-failures li[data-more-expired]:has-text("${BELGIUM}:")`;
    await page.waitForSelector(more, { timeout: 20_000 });
    expect(await page.textContent(more)).toBe(`${BELGIUM}: at least 5 more whose metadata expired while their refreshes do not fail (its version counts them only among the 500 credentials its GET /admin/metadata-refresh lists)`);
    expect(await page.getAttribute(more, 'data-expired-bound')).toBe('true');
    expect(errors).toEqual([]);
    await page.close();
  });
  // Listing fewer than 500, it listed them all: its count is exact.
  await withStandIn({ '/admin/metadata-refresh': { failing: 0, credentials: credentials.slice(0, 499) } }, async () => {
    const row = await deploymentRow(BELGIUM);
    expect(row?.metadata_refresh).toMatchObject({ expired: 10 });
    expect(row?.metadata_refresh).not.toHaveProperty('expired_is_bound');
  });
});

/** A failing credential of a stand-in's GET /admin/metadata-refresh, expired when `expired`. */
const failingOne = (i: number, expired: boolean) => ({
  credential_id: `f${i}`, idp_metadata_url: `https://idp.example/f${i}`, last_error: 'unreachable', consecutive_failures: 3, last_success_at: null,
  expired_since: expired ? '2026-11-01T00:00:00.000Z' : null, held_since: null, next_at: '2026-12-01T00:00:00.000Z',
});
/** The stand-in's lines of the refresh list, as [text, data-more-failing-expired, data-more-expired, data-failing-expired-bound, data-expired-bound]. */
async function belgiumLines(page: Page): Promise<(string | null)[][]> {
  await page.waitForSelector(`#refresh-failures li:has-text("${BELGIUM}:")`, { timeout: 20_000 });
  await settled(page);
  const items = await page.$$eval('#refresh-failures li', (lis) =>
    lis.map((li) => [li.textContent, li.getAttribute('data-more-failing-expired'), li.getAttribute('data-more-expired'), li.getAttribute('data-failing-expired-bound'), li.getAttribute('data-expired-bound')]),
  );
  return items.filter(([text]) => text?.startsWith(`${BELGIUM}:`));
}

test("expired credentials beyond those listed are counted once each: the failing ones on the failing line (the region's failing_expired), the others on their own", async () => {
  // 8 failing (5 listed, the first expired), 4 of them expired; 10 expired in all: 6 not failing, 2 of them listed.
  const credentials = [...Array.from({ length: 5 }, (_, i) => failingOne(i, i === 0)), quiet(0, true), quiet(1, true)];
  await withStandIn({ '/admin/metadata-refresh': { failing: 8, expired: 10, failing_expired: 4, credentials } }, async () => {
    const row = await deploymentRow(BELGIUM);
    expect(row?.metadata_refresh).toMatchObject({ failing: 8, expired: 10, failing_expired: 4 });
    expect(row?.metadata_refresh).not.toHaveProperty('failing_expired_is_bound');
    const { page, errors } = await openLoggedIn();
    const lines = await belgiumLines(page);
    expect(lines.filter(([, more, moreExpired]) => more !== null || moreExpired !== null)).toEqual([
      // 3 failing not listed, 3 of them expired (4 less the one listed); 6 − 2 listed expired not failing. It said 7
      // more expired (10 − 3 shown), the 3 failing ones counted twice.
      [`${BELGIUM}: 3 more failing (3 of them expired: sign-ins refused; GET /admin/metadata-refresh on ${BELGIUM} lists them)`, '3', null, null, null],
      [`${BELGIUM}: 4 more whose metadata expired while their refreshes do not fail (GET /admin/metadata-refresh on ${BELGIUM} lists the first 500 credentials, with expired_since)`, null, '4', null, null],
    ]);
    expect(errors).toEqual([]);
    await page.close();
  });
});

test('a region of a version that does not count its failing expired credentials: those it lists, exact while it lists every failing one, else a bound said as such', async () => {
  // Every failing one listed (6): 2 of them expired (f0, shown, and f5, not), and 1 expired not failing, listed.
  const all = [...Array.from({ length: 6 }, (_, i) => failingOne(i, i === 0 || i === 5)), quiet(0, true)];
  await withStandIn({ '/admin/metadata-refresh': { failing: 6, expired: 3, credentials: all } }, async () => {
    const row = await deploymentRow(BELGIUM);
    expect(row?.metadata_refresh).toMatchObject({ failing: 6, expired: 3, failing_expired: 2 });
    expect(row?.metadata_refresh).not.toHaveProperty('failing_expired_is_bound');
    const { page, errors } = await openLoggedIn();
    const lines = await belgiumLines(page);
    expect(lines.filter(([, more, moreExpired]) => more !== null || moreExpired !== null)).toEqual([
      [`${BELGIUM}: 1 more failing (1 of them expired: sign-ins refused; GET /admin/metadata-refresh on ${BELGIUM} lists them)`, '1', null, null, null],
    ]);
    expect(errors).toEqual([]);
    await page.close();
  });
  // 700 failing, 500 listed (every fifth expired: 100), 650 expired in all: how many of the others fail is not said.
  const listed = Array.from({ length: 500 }, (_, i) => failingOne(i, i % 5 === 0));
  await withStandIn({ '/admin/metadata-refresh': { failing: 700, expired: 650, credentials: listed } }, async () => {
    const row = await deploymentRow(BELGIUM);
    expect(row?.metadata_refresh).toMatchObject({ failing: 700, expired: 650, failing_expired: 100, failing_expired_is_bound: true });
    const { page, errors } = await openLoggedIn();
    const lines = await belgiumLines(page);
    expect(lines.filter(([, more, moreExpired]) => more !== null || moreExpired !== null)).toEqual([
      [`${BELGIUM}: 695 more failing (at least 99 of them expired, its version counting them only among those it lists; GET /admin/metadata-refresh on ${BELGIUM} lists them)`, '99', null, 'true', null],
      [`${BELGIUM}: up to 550 more whose metadata expired while their refreshes do not fail (its version does not say how many of its failing ones expired; GET /admin/metadata-refresh on ${BELGIUM} lists the first 500 credentials, with expired_since)`, null, '550', null, 'upper'],
    ]);
    expect(errors).toEqual([]);
    await page.close();
  });
});

test('following the change id ".." says it is not found rather than reading /admin/replication as a change', async () => {
  const { page, errors, asked } = await openLoggedIn();
  await page.fill('#change-id', '..');
  await page.click('#follow button[type=submit]');
  await page.waitForSelector('#change p.bad:has-text("not found")', { timeout: 10_000 });
  expect(await page.$('[data-change-state]')).toBeNull();
  await settled(page);
  expect(asked).not.toContain('/admin/replication/');
  expect(errors).toEqual([]);
  await page.close();
});
