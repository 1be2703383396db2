/**
 * The replay of an idempotent all_regions request (awaitChange) waits on a change that may have been made
 * in another region: it asks the tracker to hear every origin's ack channel (Tracker.wait's anyOrigin,
 * tested in tracker.test.ts), where a fresh write's wait hears only its own region's.
 */
import { awaitChange } from '../../src/replication/consistency';
import type { Replicator } from '../../src/replication/replicator';

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
