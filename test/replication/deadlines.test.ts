/**
 * The tracker's deadlines: one timer for every waiter, entries answered early taken out of the heap.
 */
import { Deadlines, type Timed } from '../../src/replication/deadlines';

interface Entry extends Timed {
  name: string;
  /** The wall-clock deadline it was added with (epoch ms). */
  at: number;
}

const entry = (name: string, at: number): Entry => ({ name, at, due: 0, slot: -1 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function heapOf(expired: (e: Entry) => void) {
  const d = new Deadlines<Entry>(expired);
  return { d, add: (e: Entry) => (d.add(e, e.at), e) };
}

afterEach(() => jest.restoreAllMocks());

test('entries expire in deadline order, each not before its deadline, whatever order they were added in', async () => {
  const expired: { name: string; late: number }[] = [];
  const { d, add } = heapOf((e) => expired.push({ name: e.name, late: Date.now() - e.at }));
  const now = Date.now();
  // Shuffled deadlines 20..400 ms away, two sharing one.
  const offsets = [220, 60, 400, 20, 140, 140, 300, 100];
  offsets.forEach((ms, i) => add(entry(`e${i}`, now + ms)));
  expect(d.size).toBe(offsets.length);
  await sleep(600);
  // e4 and e5 share a deadline: either may go first (their due times come from two readings of the clocks).
  const names = expired.map((e) => e.name);
  expect([...names.slice(0, 3), names.slice(3, 5).sort(), ...names.slice(5)]).toEqual(['e3', 'e1', 'e7', ['e4', 'e5'], 'e0', 'e6', 'e2']);
  for (const e of expired) expect(e.late).toBeGreaterThanOrEqual(0);
  expect(d.size).toBe(0);
  expect(d.armed).toBe(false);
});

test('an entry taken out never expires, and the others still do; taking one out twice is harmless', async () => {
  const expired: string[] = [];
  const { d, add } = heapOf((e) => expired.push(e.name));
  const now = Date.now();
  const entries = Array.from({ length: 200 }, (_, i) => add(entry(`e${i}`, now + 50 + ((i * 37) % 200))));
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
  // In the order of their due times on the monotonic clock (two wall-clock deadlines a millisecond or two
  // apart can be taken over in either order when the wall clock is adjusted between the two adds).
  const times = expired.map((n) => (entries.find((e) => e.name === n) as Entry).due);
  expect(times).toEqual([...times].sort((a, b) => a - b));
});

test('random adds and removals keep the heap in order: every entry left expires, in deadline order', async () => {
  // A fixed pseudo-random sequence (the same every run): removals from the middle of the heap move its
  // last entry there, which must then move up or down.
  let seed = 12345;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const expired: Entry[] = [];
  const { d, add } = heapOf((e) => expired.push(e));
  const now = Date.now();
  const live: Entry[] = [];
  for (let i = 0; i < 3000; i++) {
    if (live.length > 0 && rand(3) === 0) d.remove(live.splice(rand(live.length), 1)[0] as Entry);
    else live.push(add(entry(`e${i}`, now + 100 + rand(300))));
  }
  expect(d.size).toBe(live.length);
  await sleep(700);
  expect(expired).toHaveLength(live.length);
  const times = expired.map((e) => e.due); // as above
  expect(times).toEqual([...times].sort((a, b) => a - b));
});

test('a deadline earlier than every other one added later still fires on time; an empty heap holds no timer', async () => {
  const expired: string[] = [];
  const { d, add } = heapOf((e) => expired.push(e.name));
  const late = add(entry('late', Date.now() + 5000));
  add(entry('soon', Date.now() + 30));
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
    if (e.name === 'first') d.add(entry('again', 0), Date.now() + 30);
  });
  d.add(entry('first', 0), Date.now() + 20);
  await sleep(250);
  expect(expired).toEqual(['first', 'again']);
});

test('a step of the system clock moves no deadline: each expires after the time it was given, as a timer would', async () => {
  const real = Date.now.bind(Date);
  let step = 0;
  jest.spyOn(Date, 'now').mockImplementation(() => real() + step);
  const expired = new Map<string, number>();
  const started = performance.now();
  const { add } = heapOf((e) => expired.set(e.name, performance.now() - started));
  add(entry('a', Date.now() + 100));
  add(entry('b', Date.now() + 700));
  // The clock jumps 2 s ahead: b is not due for ~700 ms of real time still.
  step = 2000;
  await sleep(300);
  expect([...expired.keys()]).toEqual(['a']);
  // Then 2 s back (and more): a new entry given 100 ms still gets 100 ms, not 2 s more.
  step = -2000;
  add(entry('c', Date.now() + 100));
  await sleep(600);
  expect([...expired.keys()]).toEqual(['a', 'c', 'b']);
  expect(expired.get('a')).toBeGreaterThanOrEqual(99);
  expect(expired.get('b')).toBeGreaterThanOrEqual(699);
  expect(expired.get('c')).toBeLessThan(600);
});
