/**
 * The commands typed while `npm run harness -- up` runs (scripts/harness/cli.ts), on a real harness stack: one
 * region and the shared Redis host, each in its network namespace. A heal of a host that is not partitioned,
 * a resume of a service that is not paused, a pause of one that is not running, a kill of one already down and
 * a start of one running did nothing and answered
 * `ok:`, so an operator who typed the wrong host believed the right one healed; now each is an `error:` that
 * says the state, and the stack keeps running. The fault schedule's own heals (faults.ts heals only hosts it
 * finds partitioned) still work on it. Needs root (network namespaces), as the fault schedule does; CI runs
 * as root.
 */
import { reply } from '../../scripts/harness/cli';
import { FaultSchedule, type FaultOptions } from '../../scripts/harness/faults';
import { Stack } from '../../scripts/harness/stack';
import { eventually } from '../support/harness';

const asRoot = process.getuid?.() === 0;
const US = 'us-iowa';
const said: string[] = [];
let stack: Stack | null = null;

/** What `up` prints for the line, and whether it reads on. */
const typed = (line: string) => reply(up(), line);
/** What `up` prints for the line, which leaves it reading on (every command here but quit). */
const answered = async (line: string): Promise<string> => {
  const { text, more } = await typed(line);
  expect(more).toBe(true);
  return text;
};
/** The command is taken: `up` answers `ok: <line>`. */
const taken = async (line: string): Promise<void> => {
  expect(await answered(line)).toBe(`ok: ${line}\n`);
};
const up = (): Stack => {
  if (!stack) throw new Error('the stack is not up');
  return stack;
};
const serves = () => eventually(async () => (await fetch(`${up().regionUrl(US)}/healthz`, { signal: AbortSignal.timeout(2000) })).ok, 30_000);
const stateOf = (service: string) => up().status().find((s) => s.host === service);

(asRoot ? describe : describe.skip)('harness commands on a stack', () => {
  beforeAll(async () => {
    stack = await Stack.up({
      regions: [{ id: US, delayMs: 0 }],
      redisDelayMs: 0,
      jitterMs: 0,
      redisAppendOnly: true,
      sharedRedis: true,
      ackSignatures: 'require',
      logLevel: 'warn',
      say: (m) => said.push(m),
    });
  }, 120_000);

  afterAll(async () => {
    // Stopped and waited for first: teardown only signals them, and jest would find their handles still open.
    await Promise.all([...(stack?.serviceNames ?? []), `postgres@${US}`].map((s) => stack?.kill(s, s.startsWith('postgres@') ? 'SIGQUIT' : 'SIGKILL')));
    stack?.teardown();
  });

  test('a heal of a host that is not partitioned is an error naming the hosts that are; a partitioned one heals', async () => {
    expect(await answered(`heal ${US}`)).toBe(`error: ${US} is not partitioned: nothing to heal (no host is partitioned)\n`);

    await taken(`partition ${US} link`);
    expect(await answered('heal redis')).toBe(`error: redis is not partitioned: nothing to heal (partitioned: ${US} (link))\n`);
    expect(stateOf(US)?.partitioned).toBe('link');

    await taken(`heal ${US}`);
    expect(stateOf(US)?.partitioned).toBeNull();
    expect(await serves()).toBe(true);
    expect(await answered(`heal ${US}`)).toBe(`error: ${US} is not partitioned: nothing to heal (no host is partitioned)\n`);
  }, 60_000);

  test('a resume of a service that is not paused, and a pause of one that is not running, are errors saying its state', async () => {
    expect(await answered(`resume ${US}`)).toBe(`error: ${US} is not paused: it is running (no service is paused)\n`);

    await taken('pause redis');
    expect(await answered('pause redis')).toBe('error: redis is already paused: nothing to pause\n');
    expect(await answered(`resume ${US}`)).toBe(`error: ${US} is not paused: it is running (paused: redis)\n`);
    await taken('resume redis');
    expect(stateOf('redis')?.state).toBe('running');

    await taken('kill redis');
    expect(await answered('resume redis')).toBe('error: redis is not paused: it is down (no service is paused)\n');
    expect(await answered('pause redis')).toBe('error: redis is down: nothing to pause\n');
    expect(await answered('kill redis')).toBe('error: redis is already down: nothing to kill (down: redis)\n');
    await taken('restart redis');
    expect(stateOf('redis')?.state).toBe('running');
    expect(await serves()).toBe(true);
  }, 90_000);

  test('a kill of a service already down, and a start of one running or paused, are errors; a start of one down starts it', async () => {
    expect(await answered('start redis')).toBe('error: redis is already running: nothing to start (restart stops and starts it)\n');
    await taken('pause redis');
    expect(await answered('start redis')).toBe('error: redis is paused: resume it (restart stops and starts it)\n');
    await taken('kill redis');
    expect(await answered('kill redis')).toBe('error: redis is already down: nothing to kill (down: redis)\n');
    await taken('start redis');
    expect(stateOf('redis')?.state).toBe('running');
    await taken(`kill ${US}`);
    expect(await answered(`kill ${US}`)).toBe(`error: ${US} is already down: nothing to kill (down: ${US})\n`);
    await taken(`start ${US}`);
    expect(await serves()).toBe(true);
  }, 90_000);

  test("the fault schedule heals the partition it made, and at its end a host still partitioned", async () => {
    const partitionOnly: FaultOptions = {
      killEveryMs: Number.MAX_SAFE_INTEGER, restartAfterMs: 0, partitionAtMs: 0, partitionMs: 100, partitionMode: 'link', isolateAtMs: 0, isolateMs: 0,
      redisRestartAtMs: null, redisSignal: 'SIGKILL', postgresRestartAtMs: null, postgresSignal: 'SIGINT', stallAtMs: [], stallMs: 0,
    };
    const schedule = new FaultSchedule(up(), partitionOnly, (m) => said.push(m));
    schedule.start();
    try {
      expect(await eventually(async () => schedule.events.some((e) => e.what === `heal ${US}`), 30_000, 20)).toBe(true);
      // Cut again by hand while the schedule runs: its end heals it.
      up().partition(US, 'wan');
    } finally {
      await schedule.stop();
    }
    expect(schedule.failures).toEqual([]);
    expect(schedule.events.map((e) => e.what)).toEqual([
      `partition (link: the whole region, its Redis included) ${US} for 0.1 s`,
      `heal ${US}`,
      `heal ${US} (end of schedule)`,
    ]);
    expect(up().status().map((s) => s.partitioned)).toEqual([null, null]);
    expect(await serves()).toBe(true);
  }, 90_000);
});
