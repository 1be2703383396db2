/**
 * A refresh that finds every host-name lookup lane held by other hosts' lookups that are not answering
 * (src/metadata/lookup-gate.ts) is the region being busy, not the credential failing: it is left due, with no
 * failure counted, and refreshed once a lane frees. Before, it was recorded as the credential's own failure
 * (idp_metadata_dns_not_answering): its back-off grew and it was listed as failing. One refused because its own
 * organization's lookups not answering hold that organization's share of the lanes is put off, and the batch
 * goes on with other organizations' credentials. The resolver is a stand-in:
 * "idp.test" answers at once with loopback, names starting with "hung" only when the test lets them.
 */
import { LookupGate, replaceSharedLookupGate } from '../../src/metadata/lookup-gate';
import { adminHeaders, call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture } from '../support/idp-server';
import { useRefreshRig } from '../support/refresh-rig';
import { standInResolver } from '../support/stand-in-resolver';

const PATH = '/organizations/sso/saml/provider-credentials';
const portOf = (hostPort: string) => hostPort.split(':')[1];

const dns = standInResolver();
// One lane, so one lookup not answering holds them all; "not answering" after 100 ms (the test waits for the
// gate to say so, not for the time).
const gate = new LookupGate(dns.resolve, { lanes: 1, stallMs: 100 });

// Fetches per region 4, so that a tick refreshes one credential at a time (refresh-turns.ts): what one refusal
// does to the rest of the batch shows.
const rig = useRefreshRig('refresh-lookups-busy', (idp) => ({
  metadataAllowedHosts: [idp.hostPort, `idp.test:${portOf(idp.hostPort)}`, `hung-idp.test:${portOf(idp.hostPort)}`],
  metadataFetchConcurrency: { perRegion: 4 },
}));
let before: LookupGate | null = null;
beforeAll(() => {
  before = replaceSharedLookupGate(gate);
});
afterAll(() => {
  dns.releaseAll();
  replaceSharedLookupGate(before);
});

interface State {
  next_at: Date;
  last_success_at: Date | null;
  last_error: string | null;
  last_error_code: string | null;
  consecutive_failures: number;
}
async function stateOf(id: string): Promise<State | undefined> {
  const rows = await rig.r.region.db.$queryRawUnsafe<State[]>(
    'SELECT next_at, last_success_at, last_error, last_error_code, consecutive_failures FROM metadata_refresh_state WHERE credential_id = $1::uuid',
    id,
  );
  return rows[0];
}

const makeDue = (id: string) => rig.r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() - interval '1 minute' WHERE credential_id = $1::uuid", id);

async function createCredential(org: { id: string; api_key: string }, url: string): Promise<string> {
  const res = await call(rig.r.url, 'POST', PATH, { body: { idp_metadata_url: url }, headers: slashidHeaders(org), timeoutMs: 30_000 });
  expect(res.status).toBe(201);
  return res.body.result.id as string;
}

test("a refresh meeting the lookup lanes held by another host's unanswered lookup records no failure and refreshes once a lane frees; one of that host counts a failure", async () => {
  const { r, idp, org, refresher } = rig;
  const port = portOf(idp.hostPort);
  idp.set('busy.xml', fixture('okta.xml'));
  const mine = await createCredential(org, `http://idp.test:${port}/busy.xml`);
  // A credential of another organization's IdP host, whose DNS answers at its create (and hangs later).
  const other = await createOrg(r.url, 'hung-other');
  const creating = createCredential(other, `http://hung-idp.test:${port}/okta.xml`);
  expect(await eventually(async () => dns.calls.includes('hung-idp.test'), 5000)).toBe(true);
  dns.release('hung-idp.test');
  const theirs = await creating;
  expect(await eventually(async () => gate.stats.running === 0, 5000)).toBe(true);

  // Another fetch of that host: its DNS does not answer now, and its lookup holds the one lane.
  const othersFetch = createCredential(other, `http://hung-idp.test:${port}/okta.xml?again`);
  expect(await eventually(async () => dns.calls.filter((h) => h === 'hung-idp.test').length === 2 && gate.stats.notAnswering === 1, 5000)).toBe(true);

  // The credential of that host: its own DNS is not answering, its own failure (counted, and shown).
  await makeDue(theirs);
  expect(await refresher.runOnce(5)).toBe(1);
  expect(await stateOf(theirs)).toMatchObject({ consecutive_failures: 1, last_error_code: 'idp_metadata_dns_not_answering' });

  // Another host's credential: the region is busy, as when no fetch slot is free. Not its failure, and still
  // due for a later tick.
  await makeDue(mine);
  const hitsBefore = idp.hits('busy.xml');
  expect(await refresher.runOnce(5)).toBe(1);
  const busy = await stateOf(mine);
  expect(busy).toMatchObject({ consecutive_failures: 0, last_error: null, last_error_code: null });
  expect(busy?.next_at.getTime()).toBeLessThanOrEqual(Date.now());
  expect(idp.hits('busy.xml')).toBe(hitsBefore);
  const admin = await call(r.url, 'GET', '/admin/metadata-refresh', { headers: adminHeaders });
  expect(admin.status).toBe(200);
  expect(admin.body.failing).toBe(1); // the other host's credential alone

  // That host's DNS answers: the lane frees, and the next tick refreshes the credential.
  dns.release('hung-idp.test');
  expect(await eventually(async () => gate.stats.running === 0, 5000)).toBe(true);
  const tick = Date.now();
  expect(await refresher.runOnce(5)).toBe(1);
  expect(idp.hits('busy.xml')).toBe(hitsBefore + 1);
  const after = await stateOf(mine);
  expect(after).toMatchObject({ consecutive_failures: 0, last_error: null });
  expect(after?.last_success_at?.getTime()).toBeGreaterThanOrEqual(tick);
  expect(after?.next_at.getTime()).toBeGreaterThan(Date.now());
  await othersFetch;
});

test("a refresh refused because its own organization's unanswered lookups hold that organization's share of the lanes is put off without a failure, and the batch goes on with other organizations' credentials", async () => {
  const { r, idp, org, refresher } = rig;
  const port = portOf(idp.hostPort);
  // Two lanes, one organization's share one of them.
  const fairDns = standInResolver();
  const fair = new LookupGate(fairDns.resolve, { lanes: 2, stallMs: 100 });
  expect(fair.orgLanes).toBe(1);
  const was = replaceSharedLookupGate(fair);
  try {
    idp.set('share-theirs.xml', fixture('okta.xml'));
    idp.set('share-mine.xml', fixture('okta.xml'));
    const hungOrg = await createOrg(r.url, 'hung-share');
    const theirs = await createCredential(hungOrg, `http://idp.test:${port}/share-theirs.xml`);
    const mine = await createCredential(org, `http://idp.test:${port}/share-mine.xml`);
    // That organization's create of a host whose DNS does not answer: its lookup holds the organization's lane.
    const hanging = call(r.url, 'POST', PATH, { body: { idp_metadata_url: `http://hung-share.test:${port}/okta.xml` }, headers: slashidHeaders(hungOrg), timeoutMs: 30_000 });
    expect(await eventually(async () => fairDns.calls.includes('hung-share.test') && fair.stats.notAnswering === 1, 5000)).toBe(true);

    // Both due, that organization's first: a tick takes them in that order, one at a time.
    await rig.r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() - interval '2 minutes' WHERE credential_id = $1::uuid", theirs);
    await makeDue(mine);
    const [theirsHits, mineHits] = [idp.hits('share-theirs.xml'), idp.hits('share-mine.xml')];
    const tick = Date.now();
    expect(await refresher.runOnce(5)).toBe(2);

    // The other organization's credential is refreshed in the same batch (before, the refusal stopped it there).
    expect(idp.hits('share-mine.xml')).toBe(mineHits + 1);
    const refreshed = await stateOf(mine);
    expect(refreshed).toMatchObject({ consecutive_failures: 0, last_error: null });
    expect(refreshed?.last_success_at?.getTime()).toBeGreaterThanOrEqual(tick);

    // That organization's: not fetched, no failure counted, and no longer due (put off, so that its refusals do
    // not fill the next batches), not listed as failing.
    expect(idp.hits('share-theirs.xml')).toBe(theirsHits);
    const putOff = await stateOf(theirs);
    expect(putOff).toMatchObject({ consecutive_failures: 0, last_error: null, last_error_code: null });
    expect(putOff?.next_at.getTime()).toBeGreaterThan(Date.now());

    fairDns.releaseAll();
    expect((await hanging).status).toBe(400); // it resolved to loopback, which that host name may not use
  } finally {
    fairDns.releaseAll();
    replaceSharedLookupGate(was);
  }
});

test("a tick goes on past a batch that put off a credential of an organization whose own lookups hold its share: the other organizations' due credentials are all refreshed in it", async () => {
  const { r, idp, org, refresher } = rig;
  const port = portOf(idp.hostPort);
  const fairDns = standInResolver();
  const fair = new LookupGate(fairDns.resolve, { lanes: 2, stallMs: 100 });
  const was = replaceSharedLookupGate(fair);
  try {
    const hungOrg = await createOrg(r.url, 'hung-share-tick');
    idp.set('tick-theirs.xml', fixture('okta.xml'));
    const theirs = await createCredential(hungOrg, `http://idp.test:${port}/tick-theirs.xml`);
    const mine: string[] = [];
    for (const n of [1, 2, 3]) {
      idp.set(`tick-mine-${n}.xml`, fixture('okta.xml'));
      mine.push(await createCredential(org, `http://idp.test:${port}/tick-mine-${n}.xml`));
    }
    const hanging = call(r.url, 'POST', PATH, { body: { idp_metadata_url: `http://hung-tick.test:${port}/okta.xml` }, headers: slashidHeaders(hungOrg), timeoutMs: 30_000 });
    expect(await eventually(async () => fairDns.calls.includes('hung-tick.test') && fair.stats.notAnswering === 1, 5000)).toBe(true);

    // That organization's due first; batches of two, one credential at a time: the first batch puts it off.
    await rig.r.region.db.$executeRawUnsafe("UPDATE metadata_refresh_state SET next_at = now() - interval '2 minutes' WHERE credential_id = $1::uuid", theirs);
    for (const id of mine) await makeDue(id);
    const tick = Date.now();
    expect(await refresher.runTick(60_000, 2)).toBe(4);

    // Before: the tick ended with the first batch, leaving two of them due (a tenant's hung DNS cut every
    // tick to one batch, for as long as its share stayed held).
    for (const id of mine) expect((await stateOf(id))?.last_success_at?.getTime()).toBeGreaterThanOrEqual(tick);
    expect(await stateOf(theirs)).toMatchObject({ consecutive_failures: 0, last_error: null });
    expect((await stateOf(theirs))?.next_at.getTime()).toBeGreaterThan(Date.now());

    fairDns.releaseAll();
    expect((await hanging).status).toBe(400);
  } finally {
    fairDns.releaseAll();
    replaceSharedLookupGate(was);
  }
});
