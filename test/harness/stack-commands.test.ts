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
    expect(await typed(`heal ${US}`)).toEqual({ text: `error: ${US} is not partitioned: nothing to heal (no host is partitioned)\n`, more: true });

    expect(await typed(`partition ${US} link`)).toEqual({ text: `ok: partition ${US} link\n`, more: true });
    expect(await typed('heal redis')).toEqual({ text: `error: redis is not partitioned: nothing to heal (partitioned: ${US} (link))\n`, more: true });
    expect(stateOf(US)?.partitioned).toBe('link');

    expect(await typed(`heal ${US}`)).toEqual({ text: `ok: heal ${US}\n`, more: true });
    expect(stateOf(US)?.partitioned).toBeNull();
    expect(await serves()).toBe(true);
    expect(await typed(`heal ${US}`)).toEqual({ text: `error: ${US} is not partitioned: nothing to heal (no host is partitioned)\n`, more: true });
  }, 60_000);

  test('a resume of a service that is not paused, and a pause of one that is not running, are errors saying its state', async () => {
    expect(await typed(`resume ${US}`)).toEqual({ text: `error: ${US} is not paused: it is running (no service is paused)\n`, more: true });

    expect(await typed('pause redis')).toEqual({ text: 'ok: pause redis\n', more: true });
    expect(await typed('pause redis')).toEqual({ text: 'error: redis is already paused: nothing to pause\n', more: true });
    expect(await typed(`resume ${US}`)).toEqual({ text: `error: ${US} is not paused: it is running (paused: redis)\n`, more: true });
    expect(await typed('resume redis')).toEqual({ text: 'ok: resume redis\n', more: true });
    expect(stateOf('redis')?.state).toBe('running');

    expect(await typed('kill redis')).toEqual({ text: 'ok: kill redis\n', more: true });
    expect(await typed('resume redis')).toEqual({ text: 'error: redis is not paused: it is down (no service is paused)\n', more: true });
    expect(await typed('pause redis')).toEqual({ text: 'error: redis is down: nothing to pause\n', more: true });
    expect(await typed('kill redis')).toEqual({ text: 'error: redis is already down: nothing to kill (down: redis)\n', more: true });
    expect(await typed('restart redis')).toEqual({ text: 'ok: restart redis\n', more: true });
    expect(stateOf('redis')?.state).toBe('running');
    expect(await serves()).toBe(true);
  }, 90_000);

  test('a kill of a service already down, and a start of one running or paused, are errors; a start of one down starts it', async () => {
    expect(await typed('start redis')).toEqual({ text: 'error: redis is already running: nothing to start (restart stops and starts it)\n', more: true });
    expect(await typed('pause redis')).toEqual({ text: 'ok: pause redis\n', more: true });
    expect(await typed('start redis')).toEqual({ text: 'error: redis is paused: resume it (restart stops and starts it)\n', more: true });
    expect(await typed('kill redis')).toEqual({ text: 'ok: kill redis\n', more: true });
    expect(await typed('kill redis')).toEqual({ text: 'error: redis is already down: nothing to kill (down: redis)\n', more: true });
    expect(await typed('start redis')).toEqual({ text: 'ok: start redis\n', more: true });
    expect(stateOf('redis')?.state).toBe('running');
    expect(await typed(`kill ${US}`)).toEqual({ text: `ok: kill ${US}\n`, more: true });
    expect(await typed(`kill ${US}`)).toEqual({ text: `error: ${US} is already down: nothing to kill (down: ${US})\n`, more: true });
    expect(await typed(`start ${US}`)).toEqual({ text: `ok: start ${US}\n`, more: true });
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
