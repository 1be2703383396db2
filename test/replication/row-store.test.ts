import { createDb, type Db } from '../../src/db/client';
import { ensureDatabase, migrate } from '../../src/db/migrate';
import { credentialsTable } from '../../src/provider-credentials/store';
import { formatVersion, HybridClock } from '../../src/replication/hlc';
import { RowStore } from '../../src/replication/row-store';
import type { RowChange } from '../../src/replication/tables';
import { createDeployment, type TestDeployment } from '../support/env';

let dep: TestDeployment;
let db: Db;
let store: RowStore;

beforeAll(async () => {
  dep = await createDeployment('rowstore', ['us-iowa']);
  const url = dep.file.regions[0]?.databaseUrl ?? '';
  await ensureDatabase(url);
  await migrate(url);
  db = createDb(url);
  store = await RowStore.load(db, [credentialsTable]);
});
afterAll(async () => {
  await db.$disconnect();
  await dep.cleanup();
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
      if (e) await store.apply(db, [e]);
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
      if (e) await store.apply(db, [e]);
    }
    const s = await stateOf(id);
    expect(s?.deleted).toBe(true);
    expect(s?.version).toBe(v(2000, 'europe-belgium'));
  }
});

test('a batch holding several versions of one row keeps the greatest', async () => {
  const id = '01a20904-0000-7000-8000-000000000999';
  const changed = await store.apply(db, [change(id, v(3000), { label: 'c' }), change(id, v(1000), { label: 'a' }), change(id, v(2000), { label: 'b' })]);
  expect(changed).toBe(1);
  expect((await stateOf(id))?.label).toBe('c');
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
