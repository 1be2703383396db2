/**
 * The fault schedule's database stall (scripts/harness/faults.ts) on two real region processes and their
 * databases: a stall due while no region is up waits for one and stalls it (it returned unseen, and a
 * `--short` run passed with two of its three stalls), and one that finds no region before the schedule ends
 * fails the run rather than passing for a stall that found nothing.
 */
import { FaultSchedule, type FaultOptions } from '../../scripts/harness/faults';
import { eventually, startCluster, type Cluster } from '../support/harness';

const US = 'us-iowa';
const EU = 'europe-belgium';
let cluster: Cluster;
let schedule: FaultSchedule | null = null;
/** How often the schedule asked whether a region runs. */
const looks = new Map<string, number>();

/** Only the stalls: no kills, partitions or restarts of Redis or Postgres. */
const STALL_ONLY: FaultOptions = {
  killEveryMs: Number.MAX_SAFE_INTEGER, restartAfterMs: 0, partitionAtMs: 0, partitionMs: 0, partitionMode: 'wan', isolateAtMs: 0, isolateMs: 0,
  redisRestartAtMs: null, redisSignal: 'SIGKILL', postgresRestartAtMs: null, postgresSignal: 'SIGINT', stallAtMs: [0], stallMs: 200,
};

/** The schedule's view of the stack, over the test's region processes (a stack's regions, its hosts). */
function target(): ConstructorParameters<typeof FaultSchedule>[0] {
  const dbUrls = new Map(cluster.deployment.file.regions.map((r) => [r.id, r.databaseUrl]));
  const stack = {
    regionIds: cluster.regions,
    hostNames: cluster.regions,
    sharedRedis: false,
    isRunning: (service: string) => {
      looks.set(service, (looks.get(service) ?? 0) + 1);
      return cluster.proc(service).running;
    },
    isPartitioned: () => false,
    partition: () => {
      throw new Error('no partitions here');
    },
    heal: () => undefined,
    kill: (service: string) => cluster.proc(service).kill(),
    startService: async (service: string) => {
      const p = cluster.proc(service);
      if (!p.running) p.start();
      await p.waitReady();
    },
    dbUrl: (region: string) => dbUrls.get(region) ?? '',
  };
  // (A Stack's private members are not the schedule's business: FaultTarget picks what it uses.)
  return stack as unknown as ConstructorParameters<typeof FaultSchedule>[0];
}

const said: string[] = [];
const say = (m: string) => said.push(m);

beforeAll(async () => {
  cluster = await startCluster('fault-stall', [US, EU]);
}, 90_000);
afterAll(async () => {
  await schedule?.stop().catch(() => undefined);
  await cluster?.stop(0);
});

test('a stall of a region database with no region up fails the run when the schedule ends first', async () => {
  await Promise.all([US, EU].map((r) => cluster.proc(r).kill()));
  schedule = new FaultSchedule(target(), STALL_ONLY, say);
  schedule.start();
  // Ends the schedule before any region is up; stop() then starts the regions again.
  await schedule.stop();
  expect(schedule.failures).toEqual(['no region was up to stall the database of']);
  expect(schedule.events.filter((e) => e.what.includes('stalled'))).toEqual([]);
  expect([US, EU].map((r) => cluster.proc(r).running)).toEqual([true, true]);
}, 90_000);

test('a stall due while no region is up waits for one, stalls its database and kills it meanwhile, and it comes back', async () => {
  await Promise.all([US, EU].map((r) => cluster.proc(r).kill()));
  looks.clear();
  schedule = new FaultSchedule(target(), STALL_ONLY, say);
  schedule.start();
  const s = schedule;
  // Once the stall found no region up and looked again (it waits), europe-belgium starts: it is the one.
  expect(await eventually(async () => (looks.get(EU) ?? 0) >= 2, 10_000, 20)).toBe(true);
  cluster.proc(EU).start();
  const back = await eventually(async () => s.events.some((e) => e.what === `${EU} is back`) || s.failures.length > 0, 60_000);
  expect({ back, failures: s.failures }).toEqual({ back: true, failures: [] });
  expect(s.events.map((e) => e.what.replace(/\d+ database sessions/, 'N database sessions'))).toEqual([
    `database of ${EU} stalled (credential tables locked) for 0.2 s`,
    `kill -9 ${EU} and its N database sessions while its database stalls`,
    `${EU} is back`,
  ]);
  expect(s.stalls).toBe(1);
  await s.stop();
  expect(s.failures).toEqual([]);
  expect(s.events.map((e) => e.what).slice(3)).toEqual([`start ${US} (end of schedule)`]);
}, 120_000);
