/**
 * The row store's merge rule, run by row-store.test.ts through a Prisma client (one round trip per
 * statement, as local writes do) and by row-store-pipelined.test.ts through pg-tx.ts's pipelined
 * transactions (as the applier does): both must store and report the same.
 */
import type { Db } from '../../src/db/client';
import { credentialsTable } from '../../src/provider-credentials/store';
import { formatVersion, HybridClock } from '../../src/replication/hlc';
import { clockFloor } from '../../src/replication/horizon';
import { creatingOps, RowStore, type ApplyOptions } from '../../src/replication/row-store';
import type { RowChange } from '../../src/replication/tables';
import { migratedDb, type MigratedDb } from '../support/migrated-db';
import { blocksAnother, eventually } from '../support/harness';
import { Client, type Pool } from 'pg';
import { createApplyPool, inPipeline } from '../../src/replication/pg-tx';

export function rowStoreCases(pipelined: boolean): void {
  let m: MigratedDb;
  let db: Db;
  let store: RowStore;

  let pool: Pool | null = null;

  /**
   * Applies through a Prisma client, one round trip per statement, or `pipelined` as the applier does
   * (pg-tx.ts: locks and reads in one round trip, writes and commit in the next).
   */
  const applyTo = (s: RowStore, changes: RowChange[], opts: ApplyOptions = {}) =>
    pool ? inPipeline(pool, (tx) => s.apply(tx, changes, undefined, { ...opts, lock: true, last: true })) : s.apply(db, changes, undefined, opts);

  beforeAll(async () => {
    m = await migratedDb(pipelined ? 'rowstorepipe' : 'rowstore');
    db = m.db;
    if (pipelined) pool = createApplyPool(m.url);
    store = await RowStore.load(db, [credentialsTable]);
  });
  afterAll(async () => {
    await pool?.end();
    await m.close();
  });

  const ORG = '01a20904-0000-7000-8000-00000000000a';
  const v = (wall: number, region = 'us-iowa', counter = 0) => formatVersion({ wall, counter, region });

  function change(id: string, version: string, fields: Record<string, unknown>): RowChange {
    return {
      table: credentialsTable.name,
      key: id,
      version,
      row: {
        id,
        org_id: ORG,
        label: 'initial',
        idp_metadata_url: 'https://idp.example.com/md',
        email_claims: [],
        enable_in_slashid_oidc_authz_server: false,
        home_region: 'us-iowa',
        created_at: '2026-11-23T00:00:00.000Z',
        updated_at: '2026-11-23T00:00:00.000Z',
        deleted_at: null,
        origin_region: version.split('.')[2],
        version,
        ...fields,
      },
    };
  }

  function permutations<T>(xs: T[]): T[][] {
    if (xs.length <= 1) return [xs];
    return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
  }

  async function stateOf(id: string) {
    const row = await db.samlProviderCredential.findUnique({ where: { id } });
    return row && { label: row.label, version: row.version, deleted: row.deletedAt !== null, claims: row.emailClaims };
  }

  test('every order of the same events, with duplicates, ends in the same state', async () => {
    const template = (id: string) => [
      change(id, v(1000), {}),
      change(id, v(2000, 'europe-belgium'), { label: 'from belgium' }),
      change(id, v(2000, 'asia-japan'), { label: 'from japan', email_claims: ['mail'] }),
      change(id, v(1500), { label: 'older' }),
    ];
    const orders = permutations([0, 1, 2, 3]);
    let n = 0;
    for (const order of orders) {
      const id = `01a20904-0000-7000-8000-${String(++n).padStart(12, '0')}`;
      const events = template(id);
      for (const i of [...order, order[0] ?? 0]) {
        const e = events[i];
        if (e) await applyTo(store, [e]);
      }
      // Same wall time and counter: the region id breaks the tie ('europe-belgium' > 'asia-japan').
      expect(await stateOf(id)).toEqual({ label: 'from belgium', version: v(2000, 'europe-belgium'), deleted: false, claims: [] });
    }
    const finals = await db.samlProviderCredential.findMany({ where: { orgId: ORG } });
    expect(new Set(finals.map((f) => `${f.label}|${f.version}|${f.emailClaims.join(',')}`)).size).toBe(1);
  });

  test('a deletion is final: a later or late-arriving update never brings the row back', async () => {
    const orders = permutations([0, 1, 2]);
    let n = 100;
    for (const order of orders) {
      const id = `01a20904-0000-7000-8000-${String(++n).padStart(12, '0')}`;
      const events = [
        change(id, v(1000), {}),
        change(id, v(2000, 'europe-belgium'), { deleted_at: '2026-11-23T00:00:02.000Z' }),
        // concurrent update stamped after the delete (clock skew): still must not revive it
        change(id, v(3000, 'asia-japan'), { label: 'revived?' }),
      ];
      for (const i of order) {
        const e = events[i];
        if (e) await applyTo(store, [e]);
      }
      const s = await stateOf(id);
      expect(s?.deleted).toBe(true);
      expect(s?.version).toBe(v(2000, 'europe-belgium'));
    }
  });

  test('a batch holding several versions of one row keeps the greatest', async () => {
    const id = '01a20904-0000-7000-8000-000000000999';
    const { changed, outcomes } = await applyTo(store, [change(id, v(3000), { label: 'c' }), change(id, v(1000), { label: 'a' }), change(id, v(2000), { label: 'b' })]);
    expect(changed).toBe(1);
    expect((await stateOf(id))?.label).toBe('c');
    // Judged in the order given: the two older ones came after a newer one, so they lost to it.
    expect(outcomes.map((o) => o.applied)).toEqual([true, false, false]);
  });

  test('an update applied twice (a redelivery, a pack read again) is reported applied both times, not lost', async () => {
    const id = '01a20904-0000-7000-8000-000000000998';
    const created = v(1000);
    await applyTo(store, [change(id, created, { created_version: created })]);
    const update = change(id, v(2000, 'europe-belgium'), { created_version: created, label: 'patched' });
    const first = await applyTo(store, [update]);
    const again = await applyTo(store, [update]);
    expect(first.outcomes.map((o) => o.applied)).toEqual([true]);
    // The row holds this very version: the change is applied here (a "superseded" would answer its writer 409).
    expect(again.outcomes.map((o) => o.applied)).toEqual([true]);
    expect(again.changed).toBe(0);
    expect((await stateOf(id))?.label).toBe('patched');
  });

  test('a batch whose rows carry different columns (regions on two schema versions) sets only the columns each row carries', async () => {
    const [mine, older] = ['01a20904-0000-7000-8000-000000000990', '01a20904-0000-7000-8000-000000000991'];
    const created = v(1000);
    const trust = { id: 'trust-1', url: 'https://idp.example.com/md', pins: [] };
    await applyTo(store, [change(mine, created, { created_version: created }), change(older, created, { created_version: created, idp_trust: trust })]);
    // One update from a region whose schema has idp_trust, one from a region whose schema lacks it.
    const { outcomes } = await applyTo(store, [
      change(mine, v(2000, 'europe-belgium'), { created_version: created, label: 'newer schema', idp_trust: { ...trust, id: 'trust-2' } }),
      change(older, v(2000, 'asia-japan'), { created_version: created, label: 'older schema' }),
    ]);
    expect(outcomes).toEqual([{ applied: true }, { applied: true }]);
    const trustOf = async (id: string) => (await db.samlProviderCredential.findUnique({ where: { id } }))?.idpTrust;
    expect(await trustOf(mine)).toEqual({ ...trust, id: 'trust-2' });
    // The update that does not carry the column leaves its value as it was.
    expect(await trustOf(older)).toEqual(trust);
    expect((await stateOf(older))?.label).toBe('older schema');
  });

  test('a change that a writer outside the per-key locks outran while it waited is superseded, and names that writer\'s state', async () => {
    const id = '01a20904-0000-7000-8000-000000000992';
    const created = v(1000);
    await applyTo(store, [change(id, created, { created_version: created })]);
    // A hand-made fix (no per-key lock) holds the row, uncommitted, when the apply comes.
    const holder = new Client({ connectionString: m.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query("UPDATE saml_provider_credentials SET version = $2, origin_region = 'asia-japan', label = 'fixed by hand' WHERE id = $1", [id, v(9000, 'asia-japan')]);
      const applying = applyTo(store, [change(id, v(5000, 'europe-belgium'), { created_version: created, label: 'remote' })]);
      // The apply read the row as committed before the fix, and waits on the fixed row's lock.
      expect(await eventually(() => blocksAnother(holder), 10_000, 20)).toBe(true);
      await holder.query('COMMIT');
      const { changed, outcomes } = await applying;
      expect(changed).toBe(0);
      expect(outcomes).toEqual([
        { applied: false, winner: { table: credentialsTable.name, key: id, version: v(9000, 'asia-japan'), createdVersion: created, originRegion: 'asia-japan', deleted: false } },
      ]);
    } finally {
      await holder.end();
    }
    expect((await stateOf(id))?.label).toBe('fixed by hand');
  });

  test('an event updating the rows of an earlier create of several is judged as updates: older than what is stored, it is superseded', async () => {
    const [r1, r2] = ['01a20904-0000-7000-8000-000000000993', '01a20904-0000-7000-8000-000000000994'];
    // One create of two rows: each carries the stamp of the transaction's first write.
    const created = v(1000);
    const create = [change(r1, created, { created_version: created }), change(r2, v(1000, 'us-iowa', 1), { created_version: created })];
    expect((await applyTo(store, create, { creates: new Set(creatingOps(create)) })).outcomes).toEqual([{ applied: true }, { applied: true }]);
    await applyTo(store, [change(r1, v(5000), { created_version: created, label: 'newer' }), change(r2, v(5000, 'us-iowa', 1), { created_version: created, label: 'newer' })]);
    // A concurrent update of both rows, from another region, older than the stored one.
    const late = [
      change(r1, v(3000, 'europe-belgium'), { created_version: created, label: 'late' }),
      change(r2, v(3000, 'europe-belgium', 1), { created_version: created, label: 'late' }),
    ];
    // As the applier calls it: the ops of the event that create their row.
    const { outcomes } = await applyTo(store, late, { creates: new Set(creatingOps(late)) });
    expect(outcomes.map((o) => o.applied)).toEqual([false, false]);
    expect((await stateOf(r1))?.label).toBe('newer');
  });

  test('columns filled in after an upgrade (fillColumns) go only to a row of the same create', async () => {
    const [same, other] = ['01a20904-0000-7000-8000-000000000995', '01a20904-0000-7000-8000-000000000996'];
    const trust = { id: 'trust-held', url: 'https://idp.example.com/md', pins: [] };
    // Each row was written here, before the upgrade, by a version later than the held event's.
    await applyTo(store, [change(same, v(3000), { created_version: v(1000) }), change(other, v(3000), { created_version: v(2000, 'europe-belgium') })]);
    const fill = async (id: string) => {
      const st = store.fillColumns(change(id, v(2500, 'asia-japan'), { created_version: v(1000), idp_trust: trust }), ['idp_trust'], v(4000));
      if (st) await db.$executeRawUnsafe(st.sql, ...st.values);
    };
    await fill(same);
    await fill(other);
    const trustOf = async (id: string) => (await db.samlProviderCredential.findUnique({ where: { id } }))?.idpTrust ?? null;
    expect(await trustOf(same)).toEqual(trust);
    // Another create of the key (the one here) is not the held event's row.
    expect(await trustOf(other)).toBeNull();
  });

  describe('earliest create wins, and each change learns whether the row holds it', () => {
    // Two regions create the same key concurrently; each then updates its own create.
    const created = (id: string, at: number, region: string, fields: Record<string, unknown> = {}) =>
      change(id, v(at, region), { created_version: v(at, region), label: `created in ${region}`, ...fields });
    const updated = (id: string, createdAt: number, createdIn: string, at: number, region: string, label: string) =>
      change(id, v(at, region), { created_version: v(createdAt, createdIn), label });

    test('every order, with duplicates, keeps the earlier create and its update; the later create and its update lose', async () => {
      const orders = permutations([0, 1, 2, 3]);
      let n = 200;
      for (const order of orders) {
        const id = `01a20904-0000-7000-8000-${String(++n).padStart(12, '0')}`;
        const events = [
          created(id, 1000, 'us-iowa'),
          updated(id, 1000, 'us-iowa', 3000, 'us-iowa', 'patched in iowa'),
          // Created later, and then updated even later: its versions are greater, yet it must lose whole.
          created(id, 2000, 'europe-belgium'),
          updated(id, 2000, 'europe-belgium', 4000, 'europe-belgium', 'patched in belgium'),
        ];
        const verdict = new Map<number, boolean[]>();
        for (const i of [...order, order[0] ?? 0]) {
          const e = events[i];
          if (!e) continue;
          const { outcomes } = await applyTo(store, [e]);
          verdict.set(i, [...(verdict.get(i) ?? []), outcomes[0]?.applied ?? false]);
        }
        expect(await stateOf(id)).toEqual({ label: 'patched in iowa', version: v(3000), deleted: false, claims: [] });
        // First delivery: a change is held exactly when nothing that outranks it had arrived. The later
        // create's lineage is held only while the earlier create has not arrived (as in a cut-off region);
        // the earlier create and its update are always held. A create is held even when its own update came
        // first: the row holds the very row it created (judged superseded, an all_regions create was
        // answered 409 while every region held it).
        const before = (i: number, j: number) => order.indexOf(i) < order.indexOf(j);
        const first = (i: number) => verdict.get(i)?.[0];
        expect([first(0), first(1), first(2), first(3)]).toEqual([true, true, before(2, 0) && before(2, 1), before(3, 0) && before(3, 1)]);
      }
    });

    test('a superseded change names the stored winner; a duplicate of the stored version counts as applied', async () => {
      const id = '01a20904-0000-7000-8000-000000000500';
      expect((await applyTo(store, [created(id, 1000, 'us-iowa')])).outcomes).toEqual([{ applied: true }]);
      expect((await applyTo(store, [created(id, 1000, 'us-iowa')])).outcomes).toEqual([{ applied: true }]);
      const lost = await applyTo(store, [created(id, 2000, 'europe-belgium')]);
      expect(lost).toEqual({
        changed: 0,
        outcomes: [{ applied: false, winner: { table: credentialsTable.name, key: id, version: v(1000), createdVersion: v(1000), originRegion: 'us-iowa', deleted: false } }],
        belowHorizon: 0,
      });
      // An update older than the stored row of the same create is superseded too.
      await applyTo(store, [updated(id, 1000, 'us-iowa', 5000, 'us-iowa', 'newer')]);
      const late = await applyTo(store, [updated(id, 1000, 'us-iowa', 4000, 'asia-japan', 'older')]);
      expect(late.outcomes[0]).toMatchObject({ applied: false, winner: { version: v(5000) } });
    });

    test('a deletion holds whichever tombstone of the row is kept', async () => {
      const id = '01a20904-0000-7000-8000-000000000501';
      await applyTo(store, [created(id, 1000, 'us-iowa')]);
      const del = (at: number, region: string) => updated(id, 1000, 'us-iowa', at, region, 'x');
      const a = del(3000, 'us-iowa');
      a.row.deleted_at = '2026-11-23T00:00:03.000Z';
      const b = del(2000, 'europe-belgium');
      b.row.deleted_at = '2026-11-23T00:00:02.000Z';
      expect((await applyTo(store, [a])).outcomes).toEqual([{ applied: true }]);
      expect((await applyTo(store, [b])).outcomes).toEqual([{ applied: true }]);
      expect((await stateOf(id))?.version).toBe(v(3000));
    });

    test('a deletion of a later create of the key does not hold on the tombstone of the earlier create', async () => {
      const id = '01a20904-0000-7000-8000-000000000502';
      await applyTo(store, [created(id, 1000, 'us-iowa')]);
      const gone = updated(id, 1000, 'us-iowa', 3000, 'us-iowa', 'x');
      gone.row.deleted_at = '2026-11-23T00:00:03.000Z';
      await applyTo(store, [gone]);
      // Another region's concurrent create of the same key, deleted there: its deletion lost with its create.
      const other = updated(id, 2000, 'europe-belgium', 4000, 'europe-belgium', 'y');
      other.row.deleted_at = '2026-11-23T00:00:04.000Z';
      expect((await applyTo(store, [other])).outcomes).toEqual([
        { applied: false, winner: { table: credentialsTable.name, key: id, version: v(3000), createdVersion: v(1000), originRegion: 'us-iowa', deleted: true } },
      ]);
    });
  });

  describe('hybrid logical clock', () => {
    test('issues strictly increasing versions even when the wall clock stalls or goes back', () => {
      let now = 5000;
      const clock = new HybridClock('us-iowa', () => now);
      const seen: string[] = [];
      for (let i = 0; i < 5; i++) seen.push(clock.next());
      now = 4000;
      seen.push(clock.next());
      expect([...seen].sort()).toEqual(seen);
      expect(new Set(seen).size).toBe(seen.length);
    });

    test('orders a local write after any version it has observed from another region', () => {
      const clock = new HybridClock('us-iowa', () => 1000);
      const remote = v(9000, 'asia-japan', 7);
      clock.observe(remote);
      expect(clock.next() > remote).toBe(true);
      expect(clock.next(v(20_000, 'europe-belgium')) > v(20_000, 'europe-belgium')).toBe(true);
    });
  });

  describe('rows whose tombstone was collected (replication_horizon.collected_through)', () => {
    const cutoff = clockFloor(3000);
    const a = '01a20904-0000-7000-8000-000000000600';
    const existing = '01a20904-0000-7000-8000-000000000601';
    const fresh = '01a20904-0000-7000-8000-000000000602';
    const pruned = '01a20904-0000-7000-8000-000000000603';
    const created = (id: string, at: number, region: string) => change(id, v(at, region), { created_version: v(at, region), label: `created in ${region}` });
    const updated = (id: string, createdAt: number, at: number, region: string, label: string) =>
      change(id, v(at, region), { created_version: v(createdAt), label });
    beforeAll(async () => {
      await applyTo(store, [created(existing, 1000, 'us-iowa')]);
      await db.$executeRawUnsafe('INSERT INTO replication_horizon (id, collected_through) VALUES (1, $1)', cutoff);
    });
    afterAll(() => db.$executeRawUnsafe('DELETE FROM replication_horizon'));

    test('a change of an absent row created before the cut-off is not applied: an update lost to the collected deletion, a deletion holds', async () => {
      const late = await applyTo(store, [updated(a, 1000, 5000, 'asia-japan', 'a late update')]);
      expect(late).toEqual({
        changed: 0,
        outcomes: [{ applied: false, winner: { table: credentialsTable.name, key: a, version: cutoff, createdVersion: v(1000), originRegion: '', deleted: true } }],
        belowHorizon: 1,
      });
      const replayedCreate = await applyTo(store, [created(a, 1000, 'us-iowa')]);
      expect(replayedCreate.outcomes[0]).toMatchObject({ applied: false });
      const del = updated(a, 1000, 2000, 'europe-belgium', '');
      del.row.deleted_at = '2026-11-23T00:00:02.000Z';
      const deletion = await applyTo(store, [del]);
      expect(deletion.outcomes).toEqual([{ applied: true }]);
      expect(await stateOf(a)).toBeNull();
      // Each ruled out (the deletion too), reported to the caller, which counts them once committed (the applier).
      expect([replayedCreate.belowHorizon, deletion.belowHorizon]).toEqual([1, 1]);
    });

    test('a row created after the cut-off, and a row still held, follow the merge rule; an older incarnation does not replace a newer one', async () => {
      expect((await applyTo(store, [created(fresh, 4000, 'europe-belgium')])).outcomes).toEqual([{ applied: true }]);
      expect((await stateOf(fresh))?.label).toBe('created in europe-belgium');
      // A change of the key's collected incarnation (created before the cut-off) does not replace the newer
      // one, though an earlier create would otherwise win.
      const stale = await applyTo(store, [updated(fresh, 1000, 7000, 'asia-japan', 'collected incarnation')]);
      expect(stale.outcomes[0]).toMatchObject({ applied: false, winner: { version: v(4000, 'europe-belgium'), deleted: false } });
      expect((await stateOf(fresh))?.label).toBe('created in europe-belgium');
      expect((await applyTo(store, [updated(existing, 1000, 6000, 'asia-japan', 'updated')])).outcomes).toEqual([{ applied: true }]);
      expect((await stateOf(existing))?.label).toBe('updated');
    });

    test('a late update of a collected row is not applied in a batch with changes of a row still held either', async () => {
      const gone = '01a20904-0000-7000-8000-000000000604';
      // Two changes of one row make the batch one that reads what is stored before it writes.
      const { outcomes, belowHorizon } = await applyTo(store, [
        updated(existing, 1000, 8000, 'asia-japan', 'updated again'),
        updated(existing, 1000, 8500, 'asia-japan', 'and again'),
        updated(gone, 1000, 5000, 'asia-japan', 'a late update'),
      ]);
      expect(outcomes.map((o) => o.applied)).toEqual([true, true, false]);
      expect(belowHorizon).toBe(1);
      expect(await stateOf(gone)).toBeNull();
      expect((await stateOf(existing))?.label).toBe('and again');
    });

    test('a table whose rows each region prunes itself applies a change of an absent row whatever its age', async () => {
      const local = await RowStore.load(db, [{ ...credentialsTable, prunedLocally: true }]);
      expect((await applyTo(local, [updated(pruned, 1000, 5000, 'asia-japan', 'rewritten')])).outcomes).toEqual([{ applied: true }]);
      expect((await stateOf(pruned))?.label).toBe('rewritten');
    });
  });

  if (pipelined) {
    test('parameters written into a pipelined batch as literals arrive as they were sent', async () => {
      const tricky = `it's a \\ back\\slash, "quotes", {braces}, commas, ü, 😀 and E'x' \\'`;
      const values = [tricky, [tricky, 'plain', '', 'a,b', 'NULL'], JSON.stringify({ s: tricky, n: [1, 2] }), -42, true, null];
      const sql = 'SELECT $1::text AS a, $2::text[] AS b, $3::jsonb AS c, $4::int AS d, $5::bool AS e, $6::text AS f';
      const [rows] = await inPipeline(pool as Pool, (tx) => tx.run([{ sql, values }], true));
      expect(rows).toEqual([{ a: tricky, b: [tricky, 'plain', '', 'a,b', 'NULL'], c: { s: tricky, n: [1, 2] }, d: -42, e: true, f: null }]);
      await expect(inPipeline(pool as Pool, (tx) => tx.run([{ sql: 'SELECT $1::text', values: ['a\0b'] }]))).rejects.toThrow(/NUL/);
    });
  }
}
