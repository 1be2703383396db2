/**
 * The tracker's deadlines: one timer for every waiter, entries answered early taken out of the heap.
 */
import { Deadlines, type Timed } from '../../src/replication/deadlines';

interface Entry extends Timed {
  name: string;
}

const entry = (name: string, deadline: number): Entry => ({ name, deadline, slot: -1 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('entries expire in deadline order, each not before its deadline, whatever order they were added in', async () => {
  const expired: { name: string; late: number }[] = [];
  const d = new Deadlines<Entry>((e) => expired.push({ name: e.name, late: Date.now() - e.deadline }));
  const now = Date.now();
  // Shuffled deadlines 20..400 ms away, two sharing one.
  const offsets = [220, 60, 400, 20, 140, 140, 300, 100];
  offsets.forEach((ms, i) => d.add(entry(`e${i}`, now + ms)));
  expect(d.size).toBe(offsets.length);
  await sleep(600);
  expect(expired.map((e) => e.name)).toEqual(['e3', 'e1', 'e7', 'e4', 'e5', 'e0', 'e6', 'e2']);
  for (const e of expired) expect(e.late).toBeGreaterThanOrEqual(0);
  expect(d.size).toBe(0);
  expect(d.armed).toBe(false);
});

test('an entry taken out never expires, and the others still do; taking one out twice is harmless', async () => {
  const expired: string[] = [];
  const d = new Deadlines<Entry>((e) => expired.push(e.name));
  const now = Date.now();
  const entries = Array.from({ length: 200 }, (_, i) => entry(`e${i}`, now + 50 + ((i * 37) % 200)));
  for (const e of entries) d.add(e);
  // Every third one answered early, the earliest among them (the armed one) included.
  const removed = entries.filter((_, i) => i % 3 === 0);
  for (const e of removed) d.remove(e);
  for (const e of removed) d.remove(e);
  expect(d.size).toBe(200 - removed.length);
  expect(removed.every((e) => e.slot === -1)).toBe(true);
  await sleep(400);
  const kept = entries.filter((_, i) => i % 3 !== 0);
  expect(new Set(expired)).toEqual(new Set(kept.map((e) => e.name)));
  expect(expired).toHaveLength(kept.length);
  // In deadline order.
  const deadlineOf = new Map(entries.map((e) => [e.name, e.deadline]));
  const times = expired.map((n) => deadlineOf.get(n) as number);
  expect(times).toEqual([...times].sort((a, b) => a - b));
});

test('a deadline earlier than every other one added later still fires on time; an empty heap holds no timer', async () => {
  const expired: string[] = [];
  const d = new Deadlines<Entry>((e) => expired.push(e.name));
  const late = entry('late', Date.now() + 5000);
  d.add(late);
  d.add(entry('soon', Date.now() + 30));
  expect(d.armed).toBe(true);
  await sleep(200);
  expect(expired).toEqual(['soon']);
  d.remove(late);
  expect(d.size).toBe(0);
  // With nothing waiting the process can exit: no timer of the heap is left.
  expect(d.armed).toBe(false);
});

test('an entry added from the expiry callback is kept and expires in its turn', async () => {
  const expired: string[] = [];
  const d: Deadlines<Entry> = new Deadlines<Entry>((e) => {
    expired.push(e.name);
    if (e.name === 'first') d.add(entry('again', Date.now() + 30));
  });
  d.add(entry('first', Date.now() + 20));
  await sleep(250);
  expect(expired).toEqual(['first', 'again']);
});
