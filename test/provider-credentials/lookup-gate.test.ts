/**
 * Host-name lookups that never answer, through a region's API: they hold at most the gate's lanes, one
 * organization's at most its share of them, and a fetch that would need another lookup while every lane (or its
 * organization's share) is held by ones not answering is refused at once instead of waiting behind them
 * (src/metadata/lookup-gate.ts). The resolver is a stand-in: names starting with "hung" answer only when the test
 * lets them.
 */
import { LookupGate, lookupLanes, replaceSharedLookupGate } from '../../src/metadata/lookup-gate';
import { call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';
import { standInResolver } from '../support/stand-in-resolver';

const PATH = '/organizations/sso/saml/provider-credentials';
const LOOPBACK = [{ address: '127.0.0.1', family: 4 }];

describe('through the API of a region', () => {
  let r: InProcessRegion;
  let idp: IdpServer;
  let before: LookupGate | null;
  const dns = standInResolver();
  // Two lanes, so that one lookup not answering leaves one for the others; "not answering" after 100 ms, so
  // the test need not wait 2 s (it waits for the gate to say so, not for the time).
  const gate = new LookupGate(dns.resolve, { lanes: 2, stallMs: 100 });
  let a: { id: string; api_key: string };
  let b: { id: string; api_key: string };
  let c: { id: string; api_key: string };

  beforeAll(async () => {
    before = replaceSharedLookupGate(gate);
    idp = await startIdpServer();
    const port = idp.hostPort.split(':')[1];
    // Fetches per organization up to 8, so that one organization can hold all 7 lanes of the fairness test's gate
    // with fetches under way (the default 4 leaves it to lookups of fetches that gave up, slower to get to).
    r = await startInProcess('lookup-gate', ['us-iowa'], { metadataAllowedHosts: [`idp.test:${port}`], metadataFetchConcurrency: { perOrg: 8 } });
    a = await createOrg(r.url, 'hung-a');
    b = await createOrg(r.url, 'hung-b');
    c = await createOrg(r.url, 'hung-c');
  });
  afterAll(async () => {
    dns.releaseAll();
    await r.stop();
    await idp.close();
    replaceSharedLookupGate(before);
  });

  const healthyUrl = () => `http://idp.test:${idp.hostPort.split(':')[1]}/okta.xml`;
  const create = (who: { id: string; api_key: string }, url: string) =>
    call(r.url, 'POST', PATH, { body: { idp_metadata_url: url }, headers: slashidHeaders(who), timeoutMs: 30_000 });
  /** Waits until the fetch of `host` has asked the resolver and the gate counts `n` lookups not answering. */
  const notAnswering = async (host: string, n: number): Promise<void> => {
    expect(await eventually(async () => dns.calls.includes(host) && gate.stats.notAnswering === n, 5000)).toBe(true);
  };

  test('lookups that do not answer hold at most the lanes; a fetch needing another is answered 503 busy at once with Retry-After; the lanes free when they answer', async () => {
    const first = create(a, 'https://hung-1.test/metadata.xml');
    await notAnswering('hung-1.test', 1);

    // (b) One lookup not answering leaves the other lane: a host that resolves is fetched.
    const healthy = await create(b, healthyUrl());
    expect(healthy.status).toBe(201);

    const second = create(b, 'https://hung-2.test/metadata.xml');
    await notAnswering('hung-2.test', 2);

    // (a) Both lanes are held by lookups not answering, one organization's each: a third organization's fetch of
    // a new name is refused at once, without a lookup (not after the 10 s fetch time, as a timeout), in the
    // dialect's envelope. Not a 400: nothing is wrong with the request (the lanes are others'), the region is
    // busy; a 503 with Retry-After.
    const refused = await create(c, 'https://hung-3.test/metadata.xml');
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('30');
    expect(refused.body).toEqual({
      meta: {},
      errors: [{ httpcode: 503, message: expect.stringContaining('The IdP metadata was not fetched: Could not look up the host "hung-3.test" now: 2 lookups of other IdP hosts have had no answer') }],
    });
    expect(refused.body.errors[0].message).toMatch(/Nothing is wrong with this request; retry in 30 seconds\.$/);
    expect(refused.body.errors[0].message).not.toMatch(/hung-1|hung-2|refused/); // other tenants' hosts are not named
    expect(dns.calls).not.toContain('hung-3.test');

    // A name whose lookup is already under way and not answering is refused at once too, naming it: that host's
    // own DNS is at fault, so a 400 that refuses the URL.
    const again = await create(b, 'https://hung-1.test/other.xml');
    expect(again.status).toBe(400);
    expect(again.headers.get('retry-after')).toBeNull();
    expect(again.body.errors[0].message).toMatch(/The DNS of "hung-1\.test" is not answering: a lookup of it started .* ago has no answer yet/);
    expect(dns.calls.filter((h) => h === 'hung-1.test')).toHaveLength(1);

    // (c) Once a lookup answers, its lane is free again.
    dns.release('hung-1.test');
    expect(await eventually(async () => gate.stats.running === 1)).toBe(true);
    const after = await create(a, healthyUrl());
    expect(after.status).toBe(201);

    dns.release('hung-2.test');
    // The first two fetches end as their hosts answered (a loopback address, not allow-listed under these names).
    for (const res of await Promise.all([first, second])) {
      expect(res.status).toBe(400);
      expect(res.body.errors[0].message).toMatch(/does not resolve to a public address|Timed out/);
    }
    expect(gate.stats).toEqual({ running: 0, notAnswering: 0 });
  });

  test("one organization's lookups that do not answer hold at most its share of the lanes: another organization's fetch still gets a lane, and that organization's next new host is refused as busy for it alone", async () => {
    // A region process's 7 lanes (UV_THREADPOOL_SIZE 16), 3 of them one organization's share.
    const fairDns = standInResolver();
    const fair = new LookupGate(fairDns.resolve, { lanes: 7, stallMs: 100 });
    expect(fair.orgLanes).toBe(3);
    const was = replaceSharedLookupGate(fair);
    try {
      const hung = (i: number) => `https://hung-c${i}.test/metadata.xml`;
      const held = [0, 1, 2].map((i) => create(c, hung(i)));
      expect(await eventually(async () => fair.stats.notAnswering === 3, 5000)).toBe(true);

      // Enough more of its hung names to take every other lane, as they did before the lanes were shared.
      let answered = 0;
      const more = [3, 4, 5, 6].map((i) => create(c, hung(i)).finally(() => (answered += 1)));
      expect(await eventually(async () => answered === more.length || fair.stats.notAnswering === fair.lanes, 5000)).toBe(true);

      // Another organization's fetch gets one of the lanes left (before: 503, every lane was that organization's).
      const others = await create(b, healthyUrl());
      expect(others.status).toBe(201);

      // That organization's own fetches of new names are refused at once, without a lookup: busy for it, in the
      // region-busy answer's shape (503, Retry-After), naming its own hosts that do not answer, which only it chose.
      for (const res of await Promise.all(more)) {
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('30');
        expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: 503, message: expect.any(String) }] });
        const message = res.body.errors[0].message as string;
        expect(message).toMatch(/^The IdP metadata was not fetched: Could not look up the host "hung-c[3-6]\.test" now: 3 lookups of other IdP hosts of this API key's organization \(.*\) have had no answer for over 100 ms,/);
        expect(message).toMatch(/this region runs at most 3 at once for one organization/);
        expect(message).toMatch(/Check the DNS of those hosts; retry in 30 seconds\.$/);
        for (const i of [0, 1, 2]) expect(message).toContain(`"hung-c${i}.test"`);
      }
      expect(fairDns.calls.filter((h) => h.startsWith('hung')).sort()).toEqual(['hung-c0.test', 'hung-c1.test', 'hung-c2.test']);
      expect(fair.stats).toEqual({ running: 3, notAnswering: 3 });

      // Once its lookups answer, its share is free again.
      fairDns.releaseAll();
      for (const res of await Promise.all(held)) expect(res.status).toBe(400);
      expect(await eventually(async () => fair.stats.running === 0, 5000)).toBe(true);
      const after = await create(c, healthyUrl());
      expect(after.status).toBe(201);
    } finally {
      fairDns.releaseAll();
      replaceSharedLookupGate(was);
    }
  });

  test("a parent's key acting on sub-organizations holds one share of the lanes for them all: its lookups for three sub-organizations that do not answer fill it, and its next new host for a fourth is refused as busy", async () => {
    const subDns = standInResolver();
    const subGate = new LookupGate(subDns.resolve, { lanes: 7, stallMs: 100 });
    const was = replaceSharedLookupGate(subGate);
    try {
      const parent = await createOrg(r.url, 'hung-parent');
      const subs: { id: string; api_key: string }[] = [];
      for (const i of [0, 1, 2, 3]) subs.push(await createOrg(r.url, `hung-sub-${i}`, { parent_id: parent.id }));
      const byParent = (sub: { id: string }, url: string) => create({ id: sub.id, api_key: parent.api_key }, url);
      const held = [0, 1, 2].map((i) => byParent(subs[i], `https://hung-s${i}.test/metadata.xml`));
      expect(await eventually(async () => subGate.stats.notAnswering === 3, 5000)).toBe(true);

      // Before, each sub-organization had a share of its own: this lookup took a fourth lane and hung there.
      const refused = await byParent(subs[3], 'https://hung-s3.test/metadata.xml');
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('30');
      // The hosts named are the key's organization's fetches, for the other sub-organizations: not the fourth's (before:
      // "of this organization", the one the request acts on, which had none).
      expect(refused.body.errors[0].message).toMatch(/^The IdP metadata was not fetched: Could not look up the host "hung-s3\.test" now: 3 lookups of other IdP hosts of this API key's organization \("hung-s[0-2]\.test", "hung-s[0-2]\.test", "hung-s[0-2]\.test"\) have/);
      expect(subDns.calls).not.toContain('hung-s3.test');
      // The fourth sub-organization's own key is another share, and gets a lane.
      expect((await create(subs[3], healthyUrl())).status).toBe(201);

      subDns.releaseAll();
      for (const res of await Promise.all(held)) expect(res.status).toBe(400);
      expect(await eventually(async () => subGate.stats.running === 0, 5000)).toBe(true);
    } finally {
      subDns.releaseAll();
      replaceSharedLookupGate(was);
    }
  });

  test("a PATCH of idp_metadata_url takes its organization's share as a create does: with the share held, a PATCH to another hung host is 503 busy and changes nothing; another organization's PATCH goes on", async () => {
    const patch = (who: { id: string; api_key: string }, id: string, url: string) =>
      call(r.url, 'PATCH', `${PATH}/${id}`, { body: { idp_metadata_url: url }, headers: slashidHeaders(who), timeoutMs: 30_000 });
    const urlOf = async (who: { id: string; api_key: string }, id: string) =>
      (await call(r.url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(who) })).body.result.idp_metadata_url as string;
    const mine = (await create(c, healthyUrl())).body.result.id as string;
    const theirs = (await create(b, healthyUrl())).body.result.id as string;

    // The gate's two lanes, one per organization: c's hung lookup holds its share, and leaves the other lane.
    expect(gate.orgLanes).toBe(1);
    const held = create(c, 'https://hung-p1.test/metadata.xml');
    await notAnswering('hung-p1.test', 1);

    // Without its organization the PATCH's lookup would take the free lane and hang there (a 400 at the fetch's time).
    const refused = await patch(c, mine, 'https://hung-p2.test/metadata.xml');
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('30');
    expect(refused.body).toEqual({ meta: {}, errors: [{ httpcode: 503, message: expect.any(String) }] });
    expect(refused.body.errors[0].message).toMatch(/^The IdP metadata was not fetched: Could not look up the host "hung-p2\.test" now: .*"hung-p1\.test"/);
    expect(dns.calls).not.toContain('hung-p2.test');
    expect(await urlOf(c, mine)).toBe(healthyUrl());

    // Another organization's PATCH gets the lane left, and its credential changes.
    const moved = `${healthyUrl()}?patched=1`;
    expect((await patch(b, theirs, moved)).status).toBe(204);
    expect(await urlOf(b, theirs)).toBe(moved);

    dns.release('hung-p1.test');
    expect((await held).status).toBe(400);
    expect(await eventually(async () => gate.stats.running === 0, 5000)).toBe(true);
  });
});

describe('the gate', () => {
  test('a lookup of a name already being looked up shares it: one lookup for any number of fetches', async () => {
    const dns = standInResolver();
    const gate = new LookupGate(dns.resolve, { lanes: 1, stallMs: 60_000 });
    const all = Promise.all([gate.lookup('hung.test', 'org-a'), gate.lookup('HUNG.test', 'org-b'), gate.lookup('hung.test', null)]);
    expect(gate.stats).toEqual({ running: 1, notAnswering: 0 });
    await eventually(async () => dns.calls.length === 1);
    dns.release('hung.test');
    expect(await all).toEqual([LOOPBACK, LOOPBACK, LOOPBACK]);
    expect(dns.calls).toEqual(['hung.test']);
  });

  test("a lookup counts against the organization whose fetch started it only: another organization sharing it keeps its own share", async () => {
    const dns = standInResolver();
    const gate = new LookupGate(dns.resolve, { lanes: 2, stallMs: 100 });
    expect(gate.orgLanes).toBe(1);
    // Both ask for the same name while its lookup is young (in the same turn): one lookup, started for org-a.
    const a = gate.lookup('hung-shared.test', 'org-a');
    const b = gate.lookup('hung-shared.test', 'org-b');
    expect(await eventually(async () => gate.stats.notAnswering === 1, 5000)).toBe(true);
    // org-a holds its one lane with it; org-b, which shares it, does not, and gets the other lane.
    await expect(gate.lookup('hung-a2.test', 'org-a')).rejects.toMatchObject({ name: 'LookupsBusyError', scope: 'organization' });
    const b2 = gate.lookup('hung-b2.test', 'org-b');
    expect(await eventually(async () => dns.calls.includes('hung-b2.test'), 5000)).toBe(true);
    expect(gate.stats.running).toBe(2);
    dns.releaseAll();
    expect(await Promise.all([a, b, b2])).toEqual([LOOPBACK, LOOPBACK, LOOPBACK]);
    expect(dns.calls).toEqual(['hung-shared.test', 'hung-b2.test']);
  });

  test('a fetch waits for a lane held by a lookup still young, and gets it when that one answers', async () => {
    const dns = standInResolver();
    const gate = new LookupGate(dns.resolve, { lanes: 1, stallMs: 60_000 });
    const first = gate.lookup('hung-a.test', null);
    const second = gate.lookup('idp.test', null);
    await eventually(async () => dns.calls.length === 1);
    expect(dns.calls).toEqual(['hung-a.test']);
    dns.release('hung-a.test');
    expect(await Promise.all([first, second])).toEqual([LOOPBACK, LOOPBACK]);
    expect(dns.calls).toEqual(['hung-a.test', 'idp.test']);
  });

  test('a fetch that gives up while waiting for a lane starts no lookup', async () => {
    const dns = standInResolver();
    const gate = new LookupGate(dns.resolve, { lanes: 1, stallMs: 60_000 });
    void gate.lookup('hung-a.test', null);
    await eventually(async () => dns.calls.length === 1);
    const gaveUp = new AbortController();
    const waiting = gate.lookup('idp.test', null, gaveUp.signal);
    gaveUp.abort();
    await expect(waiting).rejects.toThrow(/gave up/);
    dns.release('hung-a.test');
    await eventually(async () => gate.stats.running === 0);
    expect(dns.calls).toEqual(['hung-a.test']);
  });

  test.each([
    [undefined, 1],
    ['4', 1],
    ['8', 3],
    ['2', 1],
    ['junk', 1],
  ])('UV_THREADPOOL_SIZE=%s gives %i lane(s): one thread of libuv\'s lookup half is always left', (size, lanes) => {
    expect(lookupLanes(size === undefined ? {} : { UV_THREADPOOL_SIZE: size })).toBe(lanes);
  });
});
