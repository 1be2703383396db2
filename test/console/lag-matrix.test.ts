/**
 * lagMatrix (src/console/deployment.ts): a region that answers but has applied nothing from an origin whose
 * events other regions applied is behind (how far unknown), never "caught up"; one within the progress
 * records' granularity (CAUGHT_UP_WITHIN_MS, that bound included) is caught up.
 */
import { CAUGHT_UP_WITHIN_MS, lagMatrix } from '../../src/console/deployment';
import type { RegionStatus } from '../../src/console/schema';

const region = (id: string, applied: { origin_region: string; last_event_at: string }[]) => ({
  status: { id, up: true } as RegionStatus,
  replication: { applied: applied.map((a) => ({ ...a, events_applied: 1, last_change_id: null, last_applied_at: a.last_event_at, lag_ms: 5 })), failures: { failing: 0, parked: 0 } } as never,
});

test('a region that applied nothing from an origin others applied from reads behind, not caught up', () => {
  const cells = lagMatrix([
    region('a', []),
    region('b', [{ origin_region: 'a', last_event_at: '2026-01-01T00:00:10.000Z' }]),
    region('c', []),
  ]);
  expect(cells.find((c) => c.origin === 'a' && c.region === 'c')).toMatchObject({ state: 'behind', behind_ms: null });
});

test("a region exactly the progress records' granularity behind an origin reads caught up", () => {
  const cells = lagMatrix([
    region('a', []),
    region('b', [{ origin_region: 'a', last_event_at: '2026-01-01T00:00:10.000Z' }]),
    region('c', [{ origin_region: 'a', last_event_at: new Date(Date.parse('2026-01-01T00:00:10.000Z') - CAUGHT_UP_WITHIN_MS).toISOString() }]),
  ]);
  expect(cells.find((c) => c.origin === 'a' && c.region === 'c')).toMatchObject({ state: 'caught-up', behind_ms: CAUGHT_UP_WITHIN_MS });
});

test('a region that parked changes of an origin reads behind it, though the 20 oldest parked listed came from another origin', () => {
  const at = '2026-01-01T00:00:10.000Z';
  const parkedFromB = Array.from({ length: 20 }, () => ({ origin_region: 'b' }));
  const c = region('c', [{ origin_region: 'a', last_event_at: at }, { origin_region: 'b', last_event_at: at }]);
  (c.replication as { failures: object }).failures = { failing: 0, parked: 25, parked_by_origin: { a: 5, b: 20 }, oldest_parked: parkedFromB };
  const cells = lagMatrix([region('a', []), region('b', [{ origin_region: 'a', last_event_at: at }]), c]);
  expect(cells.find((x) => x.origin === 'a' && x.region === 'c')).toMatchObject({ state: 'behind', behind_ms: null });
  expect(cells.find((x) => x.origin === 'b' && x.region === 'c')).toMatchObject({ state: 'behind', behind_ms: null });
});
