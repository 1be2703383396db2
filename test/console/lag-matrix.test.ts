/**
 * lagMatrix (src/console/deployment.ts): a region that answers but has applied nothing from an origin whose
 * events other regions applied is behind (how far unknown), never "caught up".
 */
import { lagMatrix } from '../../src/console/deployment';
import type { RegionStatus } from '../../src/console/schema';

const region = (id: string, applied: { origin_region: string; last_event_at: string }[]) => ({
  status: { id, up: true } as RegionStatus,
  replication: { applied: applied.map((a) => ({ ...a, events_applied: 1, last_change_id: null, last_applied_at: a.last_event_at, lag_ms: 5 })) } as never,
});

test('a region that applied nothing from an origin others applied from reads behind, not caught up', () => {
  const cells = lagMatrix([
    region('a', []),
    region('b', [{ origin_region: 'a', last_event_at: '2026-01-01T00:00:10.000Z' }]),
    region('c', []),
  ]);
  expect(cells.find((c) => c.origin === 'a' && c.region === 'c')).toMatchObject({ state: 'behind', behind_ms: null });
});
