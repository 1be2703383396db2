/**
 * HybridClock.next (src/replication/hlc.ts) on a physical clock that does not move: every version it issues
 * is later than every version it issued or observed before, within the same millisecond too (the counter),
 * and past the counter's last value (the next millisecond, never a seventh digit). A version equal to or
 * below the row's stored one would lose its own write to the merge rule (last writer wins).
 */
import { formatVersion, HybridClock, parseVersion } from '../../src/replication/hlc';

const NOW = 1_000_000;
const at = (wall: number, counter: number, region = 'asia-japan') => formatVersion({ wall, counter, region });

test('two versions issued in the same millisecond are ordered by the counter', () => {
  const clock = new HybridClock('us-iowa', () => NOW, 60_000);
  const first = clock.next();
  const second = clock.next(first);
  expect(parseVersion(first)).toMatchObject({ wall: NOW, counter: 0 });
  expect(parseVersion(second)).toMatchObject({ wall: NOW, counter: 1 });
  expect(second > first).toBe(true);
});

test('a version observed in this clock\'s millisecond with a higher counter orders the next local versions after it', () => {
  const clock = new HybridClock('us-iowa', () => NOW, 60_000);
  clock.next(); // the clock is at NOW, counter 0
  const remote = at(NOW, 5);
  clock.observe(remote);
  const next = clock.next();
  expect(parseVersion(next)).toMatchObject({ wall: NOW, counter: 6 });
  expect(next > remote).toBe(true);
  // And a stored row's version (next(after)) of this millisecond, further on.
  const stored = at(NOW, 40);
  expect(clock.next(stored) > stored).toBe(true);
});

test('past the counter\'s last value the next version is the next millisecond, counter 0, still six digits', () => {
  const clock = new HybridClock('us-iowa', () => NOW, 60_000);
  const last = at(NOW, 999_999);
  const next = clock.next(last);
  expect(parseVersion(next)).toEqual({ wall: NOW + 1, counter: 0, region: 'us-iowa' });
  expect(next > last).toBe(true);
  expect(parseVersion(clock.next())).toEqual({ wall: NOW + 1, counter: 1, region: 'us-iowa' });
});
