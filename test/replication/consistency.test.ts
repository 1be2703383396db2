/**
 * The replay of an idempotent all_regions request (awaitChange) waits on a change that may have been made
 * in another region: it asks the tracker to hear every origin's ack channel (Tracker.wait's anyOrigin,
 * tested in tracker.test.ts), where a fresh write's wait hears only its own region's.
 */
import { awaitChange } from '../../src/replication/consistency';
import { refusedWrite, type Replicator } from '../../src/replication/replicator';

test('a replay waits hearing every origin, counting no region as holding the change yet', async () => {
  const waits: unknown[][] = [];
  const repl = {
    // This region's own record of the change (awaitChange reads it first): none here.
    changeStatus: async () => null,
    waitForAllRegions: async (...args: unknown[]) => {
      waits.push(args);
      return { complete: true, applied: ['us-iowa', 'europe-belgium'], pending: [], superseded: [] };
    },
  } as unknown as Replicator;
  const deadline = Date.now() + 5000;
  await awaitChange(repl, { level: 'all_regions', timeoutSeconds: 5, deadline, leave: () => undefined }, 'change-1');
  expect(waits).toEqual([['change-1', deadline, [], { anyOrigin: true }]]);
});

test("a write that lost is told which region's write won and when, in the resource's terms, not the table and version", async () => {
  const winner = { table: 'saml_provider_credentials', key: '01a23b24-35b4-77e8-8d46-165176bf223d', version: '001796288028902.000003.europe-belgium', originRegion: 'europe-belgium' };
  const repl = {
    changeStatus: async () => null,
    waitForAllRegions: async () => ({ complete: false, applied: ['us-iowa'], pending: [], superseded: [{ region: 'asia-japan', winner }] }),
  } as unknown as Replicator;
  const err = await awaitChange(repl, { level: 'all_regions', timeoutSeconds: 5, deadline: Date.now() + 5000, leave: () => undefined }, 'change-2').catch((e: unknown) => e);
  expect(err).toMatchObject({ status: 409, code: 'write_superseded' });
  expect((err as Error).message).toBe(
    'This write (change change-2) lost to a concurrent write and is not kept: a write made in europe-belgium at 2026-12-03T08:53:48.902Z won (seen in asia-japan). ' +
      'Read the resource for its current state and retry the change if it still applies.',
  );
});

test("a write refused before its commit (the merge rule kept a concurrent one) says so in the same terms", () => {
  const version = '001796288028902.000003.europe-belgium';
  const err = refusedWrite({ table: 'saml_provider_credentials', key: 'k', version, createdVersion: version, originRegion: 'europe-belgium', deleted: true });
  expect({ status: err.status, code: err.code }).toEqual({ status: 409, code: 'write_superseded' });
  expect(err.message).toBe(
    'This write lost to a concurrent write from another region before it committed; nothing was written: a deletion made in europe-belgium at 2026-12-03T08:53:48.902Z won. ' +
      'Read the resource for its current state and retry the change if it still applies.',
  );
});

test('an all_regions wait is not complete while a region that joined during it lacks the change', async () => {
  const { Replicator: Repl } = await import('../../src/replication/replicator');
  let members = ['us-iowa', 'europe-belgium'];
  const waits: string[][] = [];
  const tracker = {
    wait: async (_id: string, regions: string[], applied: string[]) => {
      waits.push([...regions]);
      // asia-japan joins while the first wait is under way; the two first regions hold the change.
      members = ['us-iowa', 'europe-belgium', 'asia-japan'];
      const has = regions.filter((r) => r !== 'asia-japan');
      return { complete: has.length === regions.length, applied: [...new Set([...applied, ...has])], pending: regions.filter((r) => !has.includes(r)), superseded: [] };
    },
  };
  const repl = new Repl({ region: 'us-iowa', regions: members, tracker, links: { sharesOwn: () => true }, membership: { regions: () => members } } as unknown as ConstructorParameters<typeof Repl>[0]);
  const result = await repl.waitForAllRegions('change-1', Date.now() + 5000);
  expect(waits).toEqual([['us-iowa', 'europe-belgium'], ['us-iowa', 'europe-belgium', 'asia-japan']]);
  expect(result).toMatchObject({ complete: false, pending: ['asia-japan'] });
  expect(result.applied.sort()).toEqual(['europe-belgium', 'us-iowa']);
});

test('the replay of a create that lost only its key record still answers 409, though its status now reads complete', async () => {
  // change-status.ts counts such a create applied (what it wrote is kept); its key answers the other write,
  // so the stored answer must not be replayed as if the key were still its own.
  const winner = { table: 'idempotency_keys', key: 'k', version: '001796288028902.000003.europe-belgium', originRegion: 'europe-belgium' };
  const lost = { region: 'europe-belgium', at: '2026-12-03T08:53:49.000Z', winner };
  const status = { state: 'complete', complete: true, superseded: [], idempotency_key: { state: 'superseded', superseded: [lost], message: '' } };
  const repl = {
    region: 'us-iowa',
    changeStatus: async () => status,
    waitForAllRegions: async () => ({ complete: true, applied: ['us-iowa', 'europe-belgium'], pending: [], superseded: [] }),
  } as unknown as Replicator;
  const err = await awaitChange(repl, { level: 'all_regions', timeoutSeconds: 5, deadline: Date.now() + 5000, leave: () => undefined }, 'change-3').catch((e: unknown) => e);
  expect(err).toMatchObject({ status: 409, code: 'write_superseded', lostTables: ['idempotency_keys'] });
});
