/**
 * A local write's guesses (src/replication/row-guesses.ts, RowStore.guess): the row as this process last
 * saw it committed stands in for the read under the lock, and is checked, whole, in the commit's round trip.
 */
import { pgCode } from '../../src/db/pg-errors';
import { credentialsTable, metadataTable } from '../../src/provider-credentials/store';
import { inPipeline, queryable } from '../../src/replication/pg-tx';
import { RowGuesses, STALE_GUESS } from '../../src/replication/row-guesses';
import { RowStore, type Statement } from '../../src/replication/row-store';
import type { Row } from '../../src/replication/tables';
import { change, credentialRow, inOutbox, outboxRow, useCredentialStore, v } from '../support/credential-rows';

const s = useCredentialStore('rowguesses');

const ORG = '01a20904-0000-7000-8000-0000000000d0';
const row = (id: string, version: string, label: string): Row => credentialRow(ORG, id, version, label);
const outbox = (changeId: string): Statement => outboxRow(ORG, changeId);
const stored = async (id: string) => (await s.pool.query<{ label: string }>('SELECT label FROM saml_provider_credentials WHERE id = $1', [id])).rows[0]?.label;

/** Stores `r` and reads it under the lock, as a local write does (which keeps it as the next guess). */
async function seen(r: Row): Promise<Row> {
  await s.store.apply(s.db, [change(r)]);
  const read = await inPipeline(s.pool, (tx) => s.store.lock(queryable(tx), credentialsTable, String(r.id)));
  return read as Row;
}

/** One round trip: the guess's lock and check, the upsert built on the guess, an outbox row, COMMIT. */
async function writeOnGuess(id: string, label: string, changeId: string): Promise<{ roundTrips: number; err: unknown }> {
  const guess = s.store.guess(credentialsTable, id);
  if (!guess) throw new Error('no guess kept');
  const next = { ...guess.row, label, version: v(Date.now()) };
  const upsert = s.store.deferredPut(change(next), guess.row) as Statement;
  let roundTrips = 0;
  const err = await inPipeline(s.pool, async (tx) => {
    roundTrips++;
    const results = await tx.run([...guess.statements, upsert, outbox(changeId)], true);
    s.store.keepWritten(credentialsTable.name, id, results[guess.statements.length]?.[0]);
  }).then(() => null, (e: unknown) => e);
  return { roundTrips, err };
}

test('a row read under the lock is the next guess; a write on it is one round trip and commits', async () => {
  const id = '01a20904-0000-7000-8000-0000000000d1';
  const read = await seen(row(id, v(1000), 'first'));
  expect(s.store.guess(credentialsTable, id)?.row).toEqual(read);
  const { roundTrips, err } = await writeOnGuess(id, 'second', '01a20904-0000-7000-8000-0000000000e1');
  expect(err).toBeNull();
  expect(roundTrips).toBe(1);
  expect(await stored(id)).toBe('second');
  expect(await inOutbox(s.pool, '01a20904-0000-7000-8000-0000000000e1')).toBe(1);
  // What the write stored, as Postgres returned it, is the guess now: the same as a read under the lock.
  const kept = s.store.guess(credentialsTable, id)?.row;
  expect(kept?.label).toBe('second');
  expect(kept).toEqual(await inPipeline(s.pool, (tx) => s.store.lock(queryable(tx), credentialsTable, id)));
});

test('a row changed since the guess, even by a writer that kept its version, fails the write before COMMIT', async () => {
  const id = '01a20904-0000-7000-8000-0000000000d2';
  await seen(row(id, v(1000), 'first'));
  await s.pool.query("UPDATE saml_provider_credentials SET label = 'by hand' WHERE id = $1", [id]);
  const { err } = await writeOnGuess(id, 'on a stale guess', '01a20904-0000-7000-8000-0000000000e2');
  expect(pgCode(err)).toBe(STALE_GUESS);
  expect(await stored(id)).toBe('by hand');
  expect(await inOutbox(s.pool, '01a20904-0000-7000-8000-0000000000e2')).toBe(0);
});

test('an applied change of the key drops its guess', async () => {
  const id = '01a20904-0000-7000-8000-0000000000d3';
  await seen(row(id, v(1000), 'first'));
  expect(s.store.guess(credentialsTable, id)).not.toBeNull();
  await s.store.apply(s.db, [change(row(id, v(2000), 'from another region'))]);
  expect(s.store.guess(credentialsTable, id)).toBeNull();
});

test('a guess is a copy: changing it changes neither the kept row nor the next guess', async () => {
  const id = '01a20904-0000-7000-8000-0000000000d4';
  await seen(row(id, v(1000), 'first'));
  const g = s.store.guess(credentialsTable, id);
  (g?.row.email_claims as string[]).push('changed');
  expect(s.store.guess(credentialsTable, id)?.row.email_claims).toEqual([]);
});

describe('RowGuesses bounds', () => {
  const text = (n: number, version = 'v1') => JSON.stringify({ version, pad: 'x'.repeat(n) });

  test('keeps at most the rows and bytes it is given, dropping the least recently used first', () => {
    const g = new RowGuesses({ rows: 2, bytes: 1_000, rowBytes: 500 });
    g.keep('a', text(10), 'v1');
    g.keep('b', text(10), 'v1');
    g.get('a'); // a is now the most recently used
    g.keep('c', text(10), 'v1');
    expect([g.get('a') !== null, g.get('b') !== null, g.get('c') !== null]).toEqual([true, false, true]);
    const big = new RowGuesses({ rows: 10, bytes: 700, rowBytes: 500 });
    big.keep('a', text(300), 'v1');
    big.keep('b', text(300), 'v1');
    big.keep('c', text(300), 'v1');
    expect(big.size).toBe(2);
    expect(big.get('a')).toBeNull();
  });

  test('does not keep a row larger than its per-row bound, and forgets what it held under that key', () => {
    const g = new RowGuesses({ rows: 10, bytes: 10_000, rowBytes: 100 });
    g.keep('a', text(10), 'v1');
    g.keep('a', text(200), 'v2');
    expect(g.get('a')).toBeNull();
    expect(g.size).toBe(0);
  });
});

test('a metadata row is never guessed: its create sends no copy of the document back, and a lock of it reads it', async () => {
  const store = await RowStore.load(s.db, [credentialsTable, metadataTable]);
  const id = '01a20904-0000-7000-8000-0000000000d9';
  const credential = row(id, v(1000), 'with metadata');
  const metadata: Row = {
    credential_id: id, org_id: ORG, idp_metadata_url: 'https://idp.example.com/md', metadata: { entity_id: 'https://idp.example.com', signing_certificates: [] },
    trust_id: '', created_at: '2026-11-23T00:00:00.000Z', updated_at: '2026-11-23T00:00:00.000Z', deleted_at: null,
    origin_region: 'us-iowa', version: v(1000), created_version: v(1000),
  };
  // A create of both rows, as createCredential's write sends it: the two upserts, the outbox row, COMMIT.
  const upserts = [store.deferredPut(change(credential), null), store.deferredPut({ table: metadataTable.name, key: id, version: v(1000), row: metadata }, null)] as Statement[];
  const results = await inPipeline(s.pool, (tx) => tx.run([...upserts, outbox('01a20904-0000-7000-8000-0000000000e9')], true));
  const returned = results.slice(0, 2).map((r) => (r?.[0] as { row: string | null } | undefined)?.row ?? null);
  store.keepWritten(credentialsTable.name, id, results[0]?.[0]);
  store.keepWritten(metadataTable.name, id, results[1]?.[0]);
  // The credential comes back and is the next guess of its key; the metadata row does not, and is not.
  expect(JSON.parse(returned[0] ?? 'null')).toMatchObject({ id, label: 'with metadata' });
  expect(store.guess(credentialsTable, id)?.row.label).toBe('with metadata');
  expect(returned[1]).toBeNull();
  expect(store.guess(metadataTable, id)).toBeNull();
  // A write that locks it reads what is stored (and keeps no guess of it either).
  const read = await inPipeline(s.pool, (tx) => store.lock(queryable(tx), metadataTable, id));
  expect(read).toMatchObject({ credential_id: id, metadata: { entity_id: 'https://idp.example.com' } });
  expect(store.guess(metadataTable, id)).toBeNull();
});
