/**
 * The re-seed refuses a peer that holds a parked change (reseed.ts peerLacks): the peer lacks that change
 * until an upgrade or an operator resolves it, and a target whose inbox cap trimmed it would get it only
 * through the copy, so it would lack it for good. --force copies anyway.
 */
import { Client } from 'pg';
import { runReseed, startCluster, type Cluster } from '../support/harness';

const [PEER, TARGET] = ['us-iowa', 'asia-japan'];
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster('reseedparked', [PEER, TARGET]);
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

test('a peer holding a parked change is refused, naming it; --force copies anyway', async () => {
  const peer = new Client({ connectionString: cluster.deployment.configFor(PEER).region.databaseUrl });
  await peer.connect();
  try {
    await peer.query(`INSERT INTO replication_failures (change_id, origin_region, event, failures, reason, last_error, parked_at)
                      VALUES ('01a2a000-0000-7000-8000-0000000000ee', 'asia-japan', '{}'::jsonb, 3, 'apply-failed', 'test', now())`);
    const refused = await runReseed(cluster, PEER, TARGET, ['--wait', '1']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`${PEER} has not caught up.*${PEER} holds 0 change\\(s\\) failing and 1 parked`));
    const forced = await runReseed(cluster, PEER, TARGET, ['--force']);
    expect({ status: forced.status, stderr: forced.stderr }).toEqual({ status: 0, stderr: '' });
  } finally {
    await peer.query('DELETE FROM replication_failures');
    await peer.end();
  }
}, 120_000);
