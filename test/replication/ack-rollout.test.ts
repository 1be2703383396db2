/**
 * The rollout of docs/operations.md "Signing acks" through real region processes, each with its own copy of
 * the config: every region `off`, then each restarted in turn with `sign`, then each with `require`, while
 * every region keeps taking `all_regions` writes. A write to the region being restarted may fail while it is
 * down; what must hold: no `all_regions` 201 comes before every region's database has the write, every write
 * acknowledged ends in every region, writes after the rollout complete with `all_regions`, and in `require`
 * nothing read goes unverified (GET /admin/replication, `ack_signatures`).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import type { AckSignatures } from '../../src/replication/ack-auth';
import { uniqueName } from '../support/env';
import { adminHeaders, call, eventually, startCluster, type Cluster } from '../support/harness';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const ALL = { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '3' };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${uniqueName('ackrollout')}-`));
const configOf = (region: string) => path.join(dir, `${region}.json`);
let cluster: Cluster;
const dbs = new Map<string, Pool>();

/** Writes `region`'s own config file: the deployment's, with `ackSignatures` as given. */
const configure = (region: string, mode: AckSignatures) => fs.writeFileSync(configOf(region), JSON.stringify({ ...cluster.deployment.file, ackSignatures: mode }));

beforeAll(async () => {
  cluster = await startCluster('ackrollout', REGIONS, {
    regionEnv: Object.fromEntries(REGIONS.map((r) => [r, { REGIONS_CONFIG: configOf(r) }])),
    beforeStart: async (deployment) => {
      for (const r of REGIONS) fs.writeFileSync(configOf(r), JSON.stringify({ ...deployment.file, ackSignatures: 'off' }));
    },
  });
  for (const r of REGIONS) {
    dbs.set(r, new Pool({ connectionString: cluster.deployment.configFor(r).region.databaseUrl, max: 3 }));
  }
}, 120_000);
afterAll(async () => {
  await Promise.all([...dbs.values()].map((db) => db.end()));
  await cluster?.stop(0);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The regions whose database lacks organization `id`. */
async function missingIn(id: string): Promise<string[]> {
  const has = await Promise.all(REGIONS.map(async (r) => (await (dbs.get(r) as Pool).query('SELECT 1 FROM organizations WHERE id = $1', [id])).rowCount === 1));
  return REGIONS.filter((_, i) => !has[i]);
}

/** An organization created in `region` under all_regions. */
const write = (region: string, name: string) => call(cluster.url(region), 'POST', '/admin/organizations', { body: { name }, headers: { ...adminHeaders, ...ALL }, timeoutMs: 10_000 });

type Figures = { mode: AckSignatures; unverified: Record<string, number>; confirmed_on_unverified: number };
const figures = async (region: string) => (await call(cluster.url(region), 'GET', '/admin/replication', { headers: adminHeaders })).body.ack_signatures as Figures;

test('off → sign → require, region by region under all_regions writes: nothing early, nothing lost, complete after, nothing unverified in require', async () => {
  const acknowledged: string[] = [];
  const early: string[] = [];
  const fiveXX: string[] = [];
  /** all_regions 201s answered by each region. */
  const completed = new Map(REGIONS.map((r) => [r, 0]));
  let running = true;
  const writer = async (k: number) => {
    for (let i = k; running; i++) {
      const region = REGIONS[i % REGIONS.length] as string;
      const res = await write(region, `rollout-${k}-${i}`).catch(() => null);
      if (!res) {
        await new Promise((r) => setTimeout(r, 100)); // the region is restarting
        continue;
      }
      if (res.status >= 500) fiveXX.push(`${region} ${res.status} ${JSON.stringify(res.body)}`);
      const id = (res.status === 201 ? res.body?.id : res.status === 408 ? res.body?.result?.id : undefined) as string | undefined;
      if (!id) continue;
      acknowledged.push(id);
      if (res.status === 201) {
        completed.set(region, (completed.get(region) ?? 0) + 1);
        const missing = await missingIn(id);
        if (missing.length) early.push(`${region} answered 201 for ${id}, missing in ${missing.join(', ')}`);
      }
    }
  };
  /** Waits until an all_regions write completed (201) in every region since now: between steps they complete both ways. */
  const completeEverywhere = async () => {
    const from = new Map(completed);
    expect(await eventually(async () => REGIONS.every((r) => (completed.get(r) ?? 0) > (from.get(r) ?? 0)), 30_000)).toBe(true);
  };
  const writers = [0, 1, 2].map(writer);
  try {
    await completeEverywhere();
    for (const mode of ['sign', 'require'] as const) {
      for (const region of REGIONS) {
        configure(region, mode);
        const p = cluster.proc(region);
        await p.stop(10_000);
        p.start();
        await p.waitReady(60_000);
        expect((await figures(region)).mode).toBe(mode);
        await completeEverywhere();
      }
    }
  } finally {
    running = false;
    await Promise.all(writers);
  }
  expect({ fiveXX, early }).toEqual({ fiveXX: [], early: [] });

  // After the rollout an all_regions write completes from every region, and nothing read goes unverified.
  // Acks written unsigned before a region signed are read (and counted) until their change is confirmed: first
  // the figures stop growing (over a confirm round, 2 s), as docs/operations.md tells an operator to watch.
  // Each window spans 5 s: a round starts at the first relay cycle 2 s or more after the last one began, and
  // the cycles run 500 ms apart after each ends, so with cycles of ~300 ms (a loaded host) rounds come ~2.6 s
  // apart, and a 2.5 s window could hold none and read flat while unsigned acks were still being counted.
  let before = await Promise.all(REGIONS.map(figures));
  expect(
    await eventually(async () => {
      await new Promise((r) => setTimeout(r, 5000));
      const now = await Promise.all(REGIONS.map(figures));
      const flat = JSON.stringify(now) === JSON.stringify(before);
      before = now;
      return flat;
    }, 60_000, 0),
  ).toBe(true);
  for (const region of REGIONS) expect((await write(region, `after-${region}`)).status).toBe(201);
  const after = await Promise.all(REGIONS.map(figures));
  expect(after).toEqual(before);
  for (const f of after) expect(f.confirmed_on_unverified).toBe(0);

  expect(await eventually(async () => (await Promise.all(acknowledged.map(missingIn))).every((m) => m.length === 0), 30_000, 500)).toBe(true);
  expect(acknowledged.length).toBeGreaterThan(REGIONS.length * 5);
}, 180_000);
