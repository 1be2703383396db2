/**
 * A region started on a database that was replaced (dropped and created again) is marked `joining` by its
 * start check before it serves: the first answer of its port after it is ready already says so, in its own
 * view and in the record of every member's Redis, and names it under `needs_reseed`. Regions run as their
 * own processes (dist/).
 */
import { dropDatabase } from '../../src/db/migrate';
import { createRedis, replicationKeys } from '../../src/redis';
import { AckSigning } from '../../src/replication/ack-auth';
import { readMembers, updateMember } from '../../src/replication/member-record';
import { freePorts, REDIS_URL, testEventAuth } from '../support/env';
import { adminHeaders, call, createOrg, eventually, startCluster, type Cluster } from '../support/harness';

let cluster: Cluster;
/** europe-belgium's operator port (its /readyz answers from a thread of its own). */
let operatorUrl = '';
const redis = createRedis(REDIS_URL, 'restore-check-start-test');

beforeAll(async () => {
  const [operatorPort] = await freePorts(1);
  operatorUrl = `http://127.0.0.1:${operatorPort}`;
  cluster = await startCluster('restore-check-start', ['us-iowa', 'europe-belgium'], { regionConfig: { 'europe-belgium': { operatorPort } } });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
  redis.disconnect();
});

const keys = () => replicationKeys(cluster.deployment.file.redisKeyPrefix);
const databaseUrl = (id: string) => cluster.deployment.file.regions.find((r) => r.id === id)?.databaseUrl as string;

test('a region started on a database dropped and created again is joining from the first answer after it is ready', async () => {
  const org = await createOrg(cluster.url('us-iowa'), 'before-the-drop', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  // The first start recorded europe-belgium's database identity (its check ran; nothing to mark).
  expect(await eventually(async () => (await redis.get(keys().databaseIdentity('europe-belgium'))) !== null)).toBe(true);

  const p = cluster.proc('europe-belgium');
  await p.stop();
  await dropDatabase(databaseUrl('europe-belgium'));
  p.start();
  await p.waitReady();

  // The first requests answered once ready: no window in which it is served as active.
  const status = (await call(p.url, 'GET', '/admin/replication', { headers: adminHeaders })).body;
  expect((status.members as { region: string; state: string }[]).find((m) => m.region === 'europe-belgium')?.state).toBe('joining');
  expect(status.needs_reseed).toEqual(['europe-belgium']);
  expect(status.start_check).toBe('done');
  // Its port opened once the check had run, not once the wait for it ran out.
  expect(cluster.logs('europe-belgium').filter((l) => l.includes("this region's start check (whether its database"))).toEqual([]);
  const { members } = await readMembers(redis, keys());
  expect(members.get('europe-belgium')?.state).toBe('joining');
  // Not ready from the first answer: a load balancer sends it no traffic until its re-seed. The operator port
  // says so too, from the main thread's next published figures (every 250 ms).
  const notReady = async (url: string) => {
    const readiness = await call(url, 'GET', '/readyz');
    return { status: readiness.status, ready: readiness.body.ready, joining: readiness.body.joining };
  };
  expect(await notReady(p.url)).toEqual({ status: 503, ready: false, joining: true });
  expect(await eventually(async () => (await notReady(operatorUrl)).joining === true, 5_000, 50)).toBe(true);
  expect(await notReady(operatorUrl)).toEqual({ status: 503, ready: false, joining: true });
  expect((await call(cluster.url('us-iowa'), 'GET', '/readyz')).status).toBe(200);
  // With every member joining (us-iowa's database restored too, say) it is ready again, saying joining: serving
  // what it holds beats every region refusing traffic.
  const mode = cluster.deployment.file.ackSignatures;
  const writer = mode && mode !== 'off' ? { signing: new AckSigning(testEventAuth(), mode) } : {};
  await updateMember(redis, keys(), 'us-iowa', { state: 'joining' }, writer);
  for (const url of [p.url, cluster.url('us-iowa')]) {
    expect(await eventually(async () => (await call(url, 'GET', '/readyz')).status === 200, 10_000, 100)).toBe(true);
    expect((await call(url, 'GET', '/readyz')).body).toMatchObject({ ready: true, joining: true });
  }
  await updateMember(redis, keys(), 'us-iowa', { state: 'active' }, writer);
  expect(await eventually(async () => (await call(p.url, 'GET', '/readyz')).status === 503, 10_000, 100)).toBe(true);
  // It serves its (empty) database meanwhile, as a region marked for a re-seed does (a request that reaches it).
  expect((await call(p.url, 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(404);
  // The peer learns it from its Redis's record (announced): needs_reseed there too.
  expect(await eventually(async () => ((await call(cluster.url('us-iowa'), 'GET', '/admin/replication', { headers: adminHeaders })).body.needs_reseed as string[]).includes('europe-belgium'))).toBe(true);
}, 60_000);
