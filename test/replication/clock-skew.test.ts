/**
 * The skew bound (issue G, item 9): the hybrid logical clock refuses remote versions more than
 * maxClockSkewMs ahead of its physical clock, so one region with a clock far ahead can neither drag every
 * region's clock along nor win every conflict; the applier parks such events instead of applying them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, readConfigFile } from '../../src/config';
import { ClockSkewError, formatVersion, HybridClock, parseVersion } from '../../src/replication/hlc';
import { eventually } from '../support/harness';
import { orgEvent, startApplierRig, type ApplierRig } from '../support/applier-rig';

describe('HybridClock', () => {
  const at = (wall: number, region = 'asia-japan') => formatVersion({ wall, counter: 0, region });

  test('observes a remote version within the bound and orders its next version after it', () => {
    const clock = new HybridClock('us-iowa', () => 1_000_000, 60_000);
    clock.observe(at(1_050_000));
    expect(parseVersion(clock.next())).toMatchObject({ wall: 1_050_000, counter: 1, region: 'us-iowa' });
  });

  test('refuses a remote version beyond now + maxSkewMs and is not moved by it', () => {
    const clock = new HybridClock('us-iowa', () => 1_000_000, 60_000);
    expect(clock.admits(at(1_060_000))).toBe(true);
    expect(clock.admits(at(1_060_001))).toBe(false);
    expect(() => clock.observe(at(5_000_000))).toThrow(ClockSkewError);
    expect(() => clock.observe(at(5_000_000))).toThrow(/4000000 ms ahead/);
    expect(parseVersion(clock.next())).toMatchObject({ wall: 1_000_000, counter: 0 });
  });

  test('a version that was once admitted still orders a local write after it (next(after) is not bounded)', () => {
    let now = 1_000_000;
    const clock = new HybridClock('us-iowa', () => now, 60_000);
    now = 900_000; // the physical clock stepped back
    expect(clock.next(at(1_000_000)) > at(1_000_000)).toBe(true);
  });

  test('maxClockSkewMs in the config file is validated', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-skew-'));
    const write = (extra: object) => {
      const p = path.join(dir, `${Math.random()}.json`);
      fs.writeFileSync(p, JSON.stringify({ redisUrl: 'redis://127.0.0.1:6379', redisKeyPrefix: 'x:', regions: [{ id: 'us-iowa', port: 1, databaseUrl: 'postgresql://x/y' }], ...extra }));
      return p;
    };
    expect(readConfigFile(write({ maxClockSkewMs: 5000 })).maxClockSkewMs).toBe(5000);
    expect(() => readConfigFile(write({ maxClockSkewMs: 0 }))).toThrow(ConfigError);
    expect(() => readConfigFile(write({ maxClockSkewMs: 'soon' }))).toThrow(/maxClockSkewMs/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('the applier', () => {
  let rig: ApplierRig;
  beforeAll(async () => {
    rig = await startApplierRig('skew');
  });
  afterAll(async () => {
    await rig.cleanup();
  });

  /** A fresh inbox, and an applier whose physical clock the test moves (`later`); the skew bound is 60 s. */
  async function onTestClock(skewRetryEveryMs: number) {
    await rig.reset();
    const t = { now: Date.now(), later: (ms: number) => (t.now += ms) };
    const applier = await rig.applier({ clock: new HybridClock('europe-belgium', () => t.now, 60_000), skewRetryEveryMs });
    return { t, applier };
  }
  /** Events parked here (of one change, when given). */
  const parkedCount = async (changeId: string | null = null) =>
    Number((await rig.db.$queryRawUnsafe<{ n: number }[]>(
      'SELECT count(*)::int AS n FROM replication_failures WHERE parked_at IS NOT NULL AND ($1::uuid IS NULL OR change_id = $1::uuid)', changeId,
    ))[0]?.n);

  test('parks an event from a clock far ahead, unapplied and unobserved, reports it, and applies it once within the bound', async () => {
    let now = Date.now();
    const clock = new HybridClock('europe-belgium', () => now, 60_000);
    const applier = await rig.applier({ clock });
    const ahead = orgEvent('from the future', { wall: now + 10 * 60_000 });
    const normal = orgEvent('on time', { wall: now });
    await rig.publish(ahead);
    await rig.publish(normal);
    applier.start();
    const org = (id: string) => rig.db.organization.findUnique({ where: { id } });
    expect(await eventually(async () => (await org(normal.orgId)) !== null, 10_000, 50)).toBe(true);
    const parked = await rig.db.$queryRawUnsafe<{ reason: string; last_error: string }[]>(
      'SELECT reason, last_error FROM replication_failures WHERE change_id = $1::uuid AND parked_at IS NOT NULL',
      ahead.changeId,
    );
    expect(parked).toMatchObject([{ reason: 'clock-skew' }]);
    expect(parked[0]?.last_error).toMatch(/ms ahead of this region's clock \(maxClockSkewMs 60000\)/);
    expect(await org(ahead.orgId)).toBeNull();
    // Not observed: this region's next version is still at its own time, not ten minutes ahead.
    expect(parseVersion(clock.next()).wall).toBeLessThan(now + 60_000);
    // Both entries leave the pending list, the parked one too. The row of "on time" is there at its commit,
    // its entry XACKed only after its ack to the origin's Redis: read once, the list could still hold it.
    expect(await eventually(async () => (await rig.pendingCount()) === 0, 5_000, 50)).toBe(true);

    // Once the physical clock has caught up (simulated), a retry applies it.
    now += 10 * 60_000;
    expect(await applier.retryParked()).toEqual({ applied: 1, parked: 0 });
    expect((await org(ahead.orgId))?.name).toBe('from the future');
  }, 60_000);

  test('an event parked for clock skew applies on its own once the clocks agree, without an operator\'s retry', async () => {
    const { t, applier } = await onTestClock(100);
    const ahead = orgEvent('parked, then on its own', { wall: t.now + 10 * 60_000 });
    await rig.publish(ahead);
    applier.start();
    expect(await eventually(async () => (await parkedCount(ahead.changeId)) === 1, 10_000, 50)).toBe(true);
    // Tried again while still ahead: it stays parked.
    await new Promise((r) => setTimeout(r, 400));
    expect(await rig.orgName(ahead.orgId)).toBeNull();
    // The physical clock catches up (simulated): the periodic retry applies it and forgets its parking.
    t.later(10 * 60_000);
    expect(await eventually(async () => (await rig.orgName(ahead.orgId)) === 'parked, then on its own', 10_000, 50)).toBe(true);
    // Its parking is forgotten by a statement after the apply's commit (parked.ts), so a moment later.
    expect(await eventually(async () => (await parkedCount(ahead.changeId)) === 0, 5_000, 50)).toBe(true);
  }, 60_000);

  test('the periodic retry of many parked changes does not hold back the changes arriving meanwhile', async () => {
    const { t, applier } = await onTestClock(200);
    // A clock minutes ahead parks all its region sent meanwhile: here 1,000 changes.
    const N = 1000;
    const ahead = Array.from({ length: N }, (_, i) => orgEvent(`ahead ${i}`, { wall: t.now + 10 * 60_000 }));
    for (let i = 0; i < N; i += 50) await rig.publishPack(ahead.slice(i, i + 50));
    applier.start();
    expect(await eventually(async () => (await parkedCount()) === N, 30_000, 100)).toBe(true);
    t.later(10 * 60_000);
    // The retry has begun applying them; a change arriving now applies while it goes on.
    expect(await eventually(async () => (await parkedCount()) < N, 10_000, 10)).toBe(true);
    const fresh = orgEvent('arrived during the retry', { wall: t.now });
    await rig.publish(fresh);
    expect(await eventually(async () => (await rig.orgName(fresh.orgId)) !== null, 10_000, 10)).toBe(true);
    expect(await parkedCount()).toBeGreaterThan(0);
    expect(await eventually(async () => (await parkedCount()) === 0, 60_000, 100)).toBe(true);
  }, 120_000);
});
