/** The cache's bookkeeping on its own: what a lookup that raced a change may keep (src/organizations/api-key-cache.ts). */
import { ApiKeyCache, type LiveKey } from '../../src/organizations/api-key-cache';

const KEY: LiveKey = { orgId: 'org', keyHash: 'hash' };

test('keeps a looked-up key while listening, and reads it again after a change is announced', async () => {
  const cache = new ApiKeyCache();
  cache.setListening(true);
  const load = jest.fn(async () => KEY);
  await cache.find('k', load);
  await cache.find('k', load);
  expect(load).toHaveBeenCalledTimes(1);
  cache.invalidate();
  await cache.find('k', load);
  expect(load).toHaveBeenCalledTimes(2);
});

test('does not keep a key read before a change that was announced while the read ran', async () => {
  const cache = new ApiKeyCache();
  cache.setListening(true);
  let finish: (k: LiveKey) => void = () => undefined;
  const slow = cache.find('k', () => new Promise<LiveKey>((r) => (finish = r)));
  cache.invalidate(); // the change committed and was announced while the old row was on its way
  finish(KEY);
  expect(await slow).toEqual(KEY);
  const load = jest.fn(async () => null);
  expect(await cache.find('k', load)).toBeNull();
  expect(load).toHaveBeenCalledTimes(1);
});

test('keeps nothing while not listening (changes would go unannounced), nor unknown keys', async () => {
  const cache = new ApiKeyCache();
  const load = jest.fn(async () => KEY);
  await cache.find('k', load);
  await cache.find('k', load);
  expect(load).toHaveBeenCalledTimes(2);
  cache.setListening(true);
  const none = jest.fn(async () => null);
  await cache.find('x', none);
  await cache.find('x', none);
  expect(none).toHaveBeenCalledTimes(2);
  await cache.find('k', load);
  cache.setListening(false);
  await cache.find('k', load);
  expect(load).toHaveBeenCalledTimes(4);
});

test('drops a key once it is older than its maximum age, even with no change announced', async () => {
  // The backstop for notifications lost while the LISTEN connection still answers its heartbeat.
  // The clock is driven by hand: on the real one, a loaded host that took this process off the CPU for over
  // 50 ms between two lookups made the second one a load too.
  let now = 1_000;
  const clock = jest.spyOn(performance, 'now').mockImplementation(() => now);
  try {
    const cache = new ApiKeyCache(10_000, 50);
    cache.setListening(true);
    const load = jest.fn(async () => KEY);
    await cache.find('k', load);
    now += 30; // within the maximum age
    await cache.find('k', load);
    expect(load).toHaveBeenCalledTimes(1);
    now += 50; // 80 ms after the read: past it
    await cache.find('k', load);
    expect(load).toHaveBeenCalledTimes(2);
    await cache.find('k', load);
    expect(load).toHaveBeenCalledTimes(2);
  } finally {
    clock.mockRestore();
  }
});

test('forgets every key when the listener comes back: a change announced while it was down went unheard', async () => {
  const cache = new ApiKeyCache();
  cache.setListening(true);
  const load = jest.fn(async () => KEY);
  await cache.find('k', load);
  // The LISTEN connection dropped and came back; a revocation committed meanwhile was announced to nobody.
  cache.setListening(false);
  cache.setListening(true);
  await cache.find('k', load);
  expect(load).toHaveBeenCalledTimes(2);
});

test("measures a key's age from the start of its lookup: what it read is as old as that", async () => {
  // The clock is driven by hand, so the test says exactly which moment the age is counted from.
  let now = 1_000;
  const clock = jest.spyOn(performance, 'now').mockImplementation(() => now);
  try {
    const cache = new ApiKeyCache(10_000, 50);
    cache.setListening(true);
    // The lookup takes 40 ms: the row it returns may have been revoked just after it was read.
    await cache.find('k', async () => {
      now += 40;
      return KEY;
    });
    now += 20; // 60 ms after the read, 20 ms after the answer: past the maximum age
    const load = jest.fn(async () => KEY);
    await cache.find('k', load);
    expect(load).toHaveBeenCalledTimes(1);
  } finally {
    clock.mockRestore();
  }
});

test('holds at most its maximum number of keys: a lookup beyond it starts the cache over', async () => {
  const cache = new ApiKeyCache(2);
  cache.setListening(true);
  const load = jest.fn(async () => KEY);
  for (const id of ['a', 'b', 'c']) await cache.find(id, load);
  expect(load).toHaveBeenCalledTimes(3);
  // 'c' was kept after the two before it were dropped; 'a' is read again.
  await cache.find('c', load);
  expect(load).toHaveBeenCalledTimes(3);
  await cache.find('a', load);
  expect(load).toHaveBeenCalledTimes(4);
});
