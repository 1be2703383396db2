/**
 * The replication horizon (src/replication/horizon.ts): the least watermark of the members, and none at all
 * while any member is joining, unreported, stale, without a consumer group or behind the stream cap.
 */
import { clockFloor, collectionCutoff, computeHorizon, parseWatermark, regionWatermark, type MemberView, type Watermark } from '../../src/replication/horizon';
import { formatVersion } from '../../src/replication/hlc';

const v = (wall: number, region = 'us-iowa', counter = 0) => formatVersion({ wall, counter, region });
const NOW = 1_800_000_000_000;
const active = (region: string, group: MemberView['group'] = { behindTrim: false }): MemberView => ({ region, state: 'active', group });
const report = (wall: number, ageMs = 1000): Watermark => ({ watermark: v(wall), at: NOW - ageMs });

describe('regionWatermark', () => {
  test('is the oldest of the unsettled outbox, the held events and the clock floor', () => {
    const clock = clockFloor(NOW - 30_000);
    expect(regionWatermark({ outbox: null, failures: null, clock })).toBe(clock);
    expect(regionWatermark({ outbox: v(NOW - 60_000), failures: null, clock })).toBe(v(NOW - 60_000));
    expect(regionWatermark({ outbox: v(NOW - 60_000), failures: v(NOW - 90_000, 'asia-japan'), clock })).toBe(v(NOW - 90_000, 'asia-japan'));
    // A version issued in the clock floor's millisecond is above it.
    expect(clockFloor(NOW) < v(NOW)).toBe(true);
    expect(clockFloor(NOW) > v(NOW - 1, 'zzz', 999_999)).toBe(true);
  });
});

describe('computeHorizon', () => {
  const members = [active('us-iowa'), active('europe-belgium'), active('asia-japan')];
  const fresh = new Map([
    ['us-iowa', report(NOW - 40_000)],
    ['europe-belgium', report(NOW - 70_000)],
    ['asia-japan', report(NOW - 50_000)],
  ]);

  test('is the lowest watermark of the members when every one reported recently', () => {
    const r = computeHorizon({ members, reports: fresh, now: NOW, maxAgeMs: 5000 });
    expect(r.horizon).toBe(v(NOW - 70_000));
    expect(r.lowest).toBe('europe-belgium');
    expect(r.heldBy).toEqual([]);
    expect(r.members.map((m) => m.ageMs)).toEqual([1000, 1000, 1000]);
  });

  test('is held back by a member that never reported (a configured region that never started)', () => {
    const reports = new Map(fresh);
    reports.delete('asia-japan');
    const r = computeHorizon({ members, reports, now: NOW, maxAgeMs: 5000 });
    expect(r.horizon).toBeNull();
    expect(r.heldBy).toEqual([{ region: 'asia-japan', reason: 'no-report' }]);
  });

  test('is held back by a member whose last report is older than the maximum age (paused, cut off, down)', () => {
    const reports = new Map(fresh);
    reports.set('asia-japan', report(NOW - 50_000, 6000));
    const r = computeHorizon({ members, reports, now: NOW, maxAgeMs: 5000 });
    expect(r.horizon).toBeNull();
    expect(r.heldBy).toEqual([{ region: 'asia-japan', reason: 'stale-report' }]);
  });

  test('is held back by a joining member (not seeded yet, or a re-seed in progress), whatever it reported', () => {
    const r = computeHorizon({ members: [...members.slice(0, 2), { region: 'asia-japan', state: 'joining', group: { behindTrim: false } }], reports: fresh, now: NOW, maxAgeMs: 5000 });
    expect(r.horizon).toBeNull();
    expect(r.heldBy).toEqual([{ region: 'asia-japan', reason: 'joining' }]);
  });

  test('is held back by a member behind the stream cap or without a consumer group', () => {
    const r = computeHorizon({ members: [active('us-iowa', null), active('europe-belgium', { behindTrim: true }), active('asia-japan')], reports: fresh, now: NOW, maxAgeMs: 5000 });
    expect(r.horizon).toBeNull();
    expect(r.heldBy).toEqual([{ region: 'us-iowa', reason: 'no-group' }, { region: 'europe-belgium', reason: 'needs-reseed' }]);
  });

  test('is held back by an unreadable report, and there is none without members', () => {
    const reports = new Map<string, Watermark | null>(fresh);
    reports.set('us-iowa', parseWatermark('{"watermark":"not a version","at":1}'));
    expect(computeHorizon({ members, reports, now: NOW, maxAgeMs: 5000 }).heldBy).toEqual([{ region: 'us-iowa', reason: 'unreadable' }]);
    expect(computeHorizon({ members: [], reports: fresh, now: NOW, maxAgeMs: 5000 }).horizon).toBeNull();
  });

  test('a report only counts for a current member: a removed region neither holds nor lowers it', () => {
    const reports = new Map(fresh);
    reports.set('south-brazil', report(NOW - 900_000, 999_999));
    expect(computeHorizon({ members, reports, now: NOW, maxAgeMs: 5000 }).horizon).toBe(v(NOW - 70_000));
  });
});

describe('collectionCutoff', () => {
  test('is the horizon less the minimum age, below every version of that millisecond', () => {
    const cut = collectionCutoff(v(NOW), 3_600_000);
    expect(cut).toBe(clockFloor(NOW - 3_600_000));
    expect(v(NOW - 3_600_001, 'zzz', 999_999) < cut).toBe(true);
    expect(v(NOW - 3_600_000, 'a', 0) < cut).toBe(false);
    expect(collectionCutoff(clockFloor(NOW), 0)).toBe(clockFloor(NOW));
  });
});

describe('parseWatermark', () => {
  test('reads what a region posted and refuses anything else', () => {
    expect(parseWatermark(JSON.stringify({ watermark: v(NOW), at: NOW }))).toEqual({ watermark: v(NOW), at: NOW });
    expect(parseWatermark(JSON.stringify({ watermark: clockFloor(NOW), at: NOW }))).toEqual({ watermark: clockFloor(NOW), at: NOW });
    for (const bad of [undefined, '', 'nope', '{}', '{"watermark":"1","at":1}', JSON.stringify({ watermark: v(NOW), at: 'x' })]) expect(parseWatermark(bad)).toBeNull();
  });
});
