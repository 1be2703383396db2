/**
 * The fetch limiter's queue on its own. A request that waits for its organization's slot gets one either when
 * another fetch gives it back or when its wait ends (then it is refused, or takes a slot freed meanwhile):
 * through the API the two differ only in how long the request took. With fake timers no wait ends unless the
 * test moves the clock, so which of the two happened is seen without timing anything.
 */
import { FetchLimiter } from '../../src/provider-credentials/fetch-limiter';

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

/** A fetch that runs until the test ends it. */
function heldFetch() {
  let end = (): void => undefined;
  const done = new Promise<void>((resolve) => {
    end = resolve;
  });
  const state = { started: false, end: () => end() };
  return Object.assign(state, {
    fetch: () => {
      state.started = true;
      return done;
    },
  });
}

/** Lets the promise chains of the limiter run (no timer fires). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

test("a request waiting for its organization's slot starts as soon as the slot is given back, not when its wait ends", async () => {
  const limiter = new FetchLimiter({ perOrg: 1, perRegion: 4 });
  const first = heldFetch();
  const second = heldFetch();
  const a = limiter.run('org', first.fetch, undefined, 60_000);
  const b = limiter.run('org', second.fetch, undefined, 60_000);
  await settle();
  expect({ first: first.started, second: second.started }).toEqual({ first: true, second: false });
  first.end();
  await a;
  await settle();
  expect(second.started).toBe(true);
  second.end();
  await b;
  expect(limiter.inFlight).toBe(0);
});

test('a request whose wait ran out leaves the queue: the slot given back next goes to the request still waiting', async () => {
  const limiter = new FetchLimiter({ perOrg: 1, perRegion: 4 });
  const first = heldFetch();
  const late = heldFetch();
  const a = limiter.run('org', first.fetch, undefined, 60_000);
  await settle();
  const gaveUp = limiter.run('org', heldFetch().fetch, undefined, 1_000);
  const refused = expect(gaveUp).rejects.toMatchObject({ status: 429, code: 'too_many_metadata_fetches' });
  jest.advanceTimersByTime(1_000);
  await refused;
  const b = limiter.run('org', late.fetch, undefined, 60_000);
  await settle();
  first.end();
  await a;
  await settle();
  expect(late.started).toBe(true);
  late.end();
  await b;
});
