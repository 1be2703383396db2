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
