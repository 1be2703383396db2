/** When a trim took entries a consumer group had not read or acked (the group then needs a re-seed). */
import { behindTrim, previousStreamId, type GroupInfo, type StreamBounds } from '../../src/replication/stream';

const group = (lastDeliveredId: string, entriesRead: number | null, pending = 0): GroupInfo => ({ name: 'asia-japan', pending, lastDeliveredId, lag: null, entriesRead });
const bounds: StreamBounds = { length: 100, firstId: '500-0', lastGeneratedId: '599-0', entriesAdded: 600 };
const floor = (g: GroupInfo, oldestPending: string | null = null) => ({ lastDelivered: g.lastDeliveredId, oldestPending });

test('a group positioned inside the stream lost nothing', () => {
  const g = group('550-0', 550);
  expect(behindTrim(g, floor(g), bounds)).toBe(false);
});

test('a group positioned before the oldest entry left lost what was trimmed in between', () => {
  const g = group('100-0', 100);
  expect(behindTrim(g, floor(g), bounds)).toBe(true);
  // Its read counter unknown (after XGROUP SETID, say): counted as lost.
  expect(behindTrim(group('100-0', null), floor(group('100-0', null)), bounds)).toBe(true);
});

test('a group that read exactly up to the trimmed boundary lost nothing', () => {
  const g = group(previousStreamId('500-0'), null);
  expect(behindTrim(g, floor(g), bounds)).toBe(false);
  const counted = group('499-0', 500);
  expect(behindTrim(counted, floor(counted), bounds)).toBe(false);
});

test('a pending entry older than the oldest entry left was trimmed', () => {
  const g = group('550-0', 550, 3);
  expect(behindTrim(g, floor(g, '450-0'), bounds)).toBe(true);
  expect(behindTrim(g, floor(g, '520-0'), bounds)).toBe(false);
});

test('a stream never trimmed, or absent, reports nothing', () => {
  const g = group('0-0', 0);
  expect(behindTrim(g, floor(g), { ...bounds, entriesAdded: 100 })).toBe(false);
  expect(behindTrim(g, floor(g), null)).toBe(false);
});

test('previousStreamId steps back across a millisecond', () => {
  expect(previousStreamId('5-3')).toBe('5-2');
  expect(previousStreamId('5-0')).toBe('4-18446744073709551615');
  expect(previousStreamId('0-0')).toBe('0-0');
});
