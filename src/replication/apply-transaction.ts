/**
 * One apply transaction of a batch of change events (pg-tx.ts pipelines it): the rows under the merge rule,
 * with the same per-key locks as local writes; the columns of events held for a newer schema filled in; and
 * for a parked change's retry, its parked row claimed first and the ack it owes its origin recorded with it.
 */
import type { Pool } from 'pg';
import type { Db } from '../db/client';
import type { Parsed } from './inbox-events';
import { owedAckStatement } from './parked';
import { inPipeline } from './pg-tx';
import { creatingOps, type RowStore, type Statement } from './row-store';
import { ident } from './table-sql';
import type { ChangeEvent, ReplicatedTable, RowChange } from './tables';
import type { AckOutcome, AckWinner } from './ack-records';

/** A parked change's retry found its parked row gone (see Applier.apply). */
export class NoLongerParked extends Error {}

/** What a committed apply transaction decided (see applyInTransaction). */
export interface Applied {
  /** The superseded outcomes of the batch's changes (none for those that hold). */
  lost: Map<string, AckOutcome>;
  /** Changes the collection horizon ruled out (ApplyResult.belowHorizon), for the caller to count now that they committed. */
  belowHorizon: number;
}

/**
 * Applies the batch in one transaction and returns, once it has committed, what became of its changes.
 * `parked`: the batch is that parked change's retry (see Applier.apply); NoLongerParked when its parked
 * row is gone.
 */
export async function applyInTransaction(
  d: { db: Db; pool: Pool; store: RowStore },
  batch: readonly Parsed[],
  parked?: string,
): Promise<Applied> {
  const { store } = d;
  const lost = new Map<string, AckOutcome>();
  let belowHorizon = 0;
  const fills: { p: Parsed; before: string }[] = [];
  for (const p of batch) {
    const before = p.event.held ? await upgradedAt(d.db, p.event.held) : null;
    if (before) fills.push({ p, before });
  }
  await inPipeline(d.pool, async (tx) => {
    if (parked !== undefined) {
      const [claimed] = await tx.send([{ sql: 'DELETE FROM replication_failures WHERE change_id = $1::uuid AND parked_at IS NOT NULL', values: [parked] }]);
      if (!claimed?.rowCount) throw new NoLongerParked();
    }
    // The same per-key locks as local writes, in a fixed order: a local write of the same key waits
    // for this apply (or this apply for it) instead of racing it into a merge-rule refusal. Taken in the
    // round trip that reads the rows; the writes go with the commit unless held columns follow.
    // A create of several rows is judged a create for each of them (ApplyOptions.creates).
    const creating = batch.flatMap((b) => creatingOps(b.event.ops));
    const owners = deletedOwners(store, batch);
    const { outcomes, reads, belowHorizon: ruledOut } = await store.apply(tx, batch.flatMap((b) => b.event.ops), undefined, {
      lock: true,
      last: fills.length === 0 && parked === undefined,
      ...(creating.length ? { creates: new Set(creating) } : {}),
      ...(owners.reads.length ? { reads: owners.reads } : {}),
    });
    belowHorizon = ruledOut;
    const orphaned = owners.found(reads ?? []);
    // A change holds when every row it wrote holds it, but for the rows it deletes with their owner (see
    // deletedWithOwner); the first row that does not names the winner.
    let i = 0;
    for (const b of batch) {
      let excused: ReadonlySet<number> | null = null;
      for (let k = 0; k < b.event.ops.length; k++) {
        const o = outcomes[i++];
        if (lost.has(b.event.changeId)) continue;
        const deletedOwner = o?.applied ? orphaned.get(b.event.ops[k] as RowChange) : undefined;
        if (deletedOwner) lost.set(b.event.changeId, { outcome: 'superseded', winner: deletedOwner });
        if (!o || o.applied) continue;
        // Worked out only for a change that lost a row (rare): most applies never look.
        excused ??= deletedWithOwner(store, b.event.ops);
        if (excused.has(k)) continue;
        const w = o.winner;
        lost.set(b.event.changeId, { outcome: 'superseded', winner: { table: w.table, key: w.key, version: w.version, originRegion: w.originRegion } });
      }
    }
    if (fills.length === 0 && parked === undefined) return;
    const sets = fills.flatMap(({ p, before }) => p.event.ops.map((op) => store.fillColumns(op, p.event.held?.columns[op.table] ?? [], before)));
    // A retried parked change owes its origin the ack: recorded with the apply, so a restart does not lose it.
    const owed = parked === undefined ? [] : [owedAckStatement(batch.map((b) => ({ changeId: b.event.changeId, origin: b.event.origin, outcome: lost.get(b.event.changeId) ?? null })))];
    await tx.run([...sets.filter((st) => st !== null), ...owed], true);
  });
  return { lost, belowHorizon };
}

/**
 * The live rows the batch creates whose owner is a tombstone here: a credential, key, Infisical config or
 * sub-organization of an organization deleted here (ReplicatedTable.ownedBy), a part of a deleted row
 * (partOf: a deleted credential's SSO settings). Such a row is stored, as every region stores it, but never
 * served, and the part sweep tombstones it (parts.ts): the write did not hold here, and the owner's
 * tombstone is its winner. Acked as held, a create made in another region while the delete was on its way
 * there answered 201 under all_regions for a credential no region would ever serve. Only creates are looked
 * at (a row the delete did not know of), under an owner the change does not write itself; the owners are
 * read with the apply's first round trip (ApplyOptions.reads), one statement per owner table.
 */
function deletedOwners(store: RowStore, batch: readonly Parsed[]): { reads: Statement[]; found(rows: readonly unknown[][]): Map<RowChange, AckWinner> } {
  const byName = new Map(store.tables.map((t) => [t.name, t]));
  const owners = new Map<string, Map<string, RowChange[]>>();
  for (const b of batch) {
    const ops = b.event.ops;
    // A change of one row (most of them) is checked against that row; the sets are for a change of several.
    const single = ops.length === 1 ? ops[0] : undefined;
    const versions = single ? null : new Set(ops.map((op) => op.version));
    // An owner the change writes live itself (an organization with its first key, a credential with its parts).
    const written = single ? null : new Set(ops.filter(isLive).map((op) => `${op.table}\u0000${op.key}`));
    for (const op of ops) {
      const t = byName.get(op.table);
      const ownerTable = t?.ownedBy ? t.ownedBy.table : t?.partOf ? t.partOf.table : null;
      const ownerKey = t?.ownedBy ? op.row[t.ownedBy.column] : op.key;
      if (ownerTable === null || typeof ownerKey !== 'string' || !isLive(op) || !store.has(ownerTable)) continue;
      const created = String(op.row.created_version);
      if (single ? single.version !== created : !versions?.has(created)) continue;
      if (single ? single.table === ownerTable && single.key === ownerKey : written?.has(`${ownerTable}\u0000${ownerKey}`)) continue;
      let keys = owners.get(ownerTable);
      if (!keys) owners.set(ownerTable, (keys = new Map<string, RowChange[]>()));
      // Pushed, not copied: a batch of one organization's creates was quadratic in copies of its list.
      const list = keys.get(ownerKey);
      if (list) list.push(op);
      else keys.set(ownerKey, [op]);
    }
  }
  const tables = [...owners];
  const reads = tables.map(([name, keys]) => {
    const key = ident((byName.get(name) as ReplicatedTable).key);
    return {
      sql: `SELECT ${key}::text AS key, version, origin_region FROM ${ident(name)} WHERE ${key} = ANY($1::${store.keyTypeOf(name)}[]) AND deleted_at IS NOT NULL`,
      values: [[...keys.keys()]],
    };
  });
  return {
    reads,
    found: (rows) => {
      const found = new Map<RowChange, AckWinner>();
      tables.forEach(([table, keys], i) => {
        for (const r of (rows[i] ?? []) as { key: string; version: string; origin_region: string }[]) {
          for (const op of keys.get(r.key) ?? []) found.set(op, { table, key: r.key, version: r.version, originRegion: r.origin_region });
        }
      });
      return found;
    },
  };
}

/** A row change that writes its row live (not a tombstone). */
const isLive = (op: RowChange): boolean => op.row.deleted_at === null || op.row.deleted_at === undefined;

/**
 * The ops of a change (by index) that tombstone a row the same change deletes the owner of
 * (ReplicatedTable.ownedBy: an organization's delete takes its keys, Infisical config and credentials), or a
 * part of such a row (a credential's metadata and SSO settings). Their losses are not the change's: what it
 * deletes is the owner, whose own tombstone decides whether it held. Such a row loses where another region
 * created it earlier than the delete's region did (the merge rule keeps the earlier create) and it outlives
 * the owner there: the part sweep (parts.ts) tombstones it, as it does any row written where the delete had
 * not arrived. Counted a loss, an organization's delete answered 409 under all_regions while the
 * organization was deleted everywhere. Only a change that deletes an owner has such ops: the owned rows of
 * any other write (a credential's delete, a key's rotation, the sweep's batches) count as before.
 */
export function deletedWithOwner(store: Pick<RowStore, 'tables' | 'has' | 'lockedIdOf'>, ops: readonly RowChange[]): Set<number> {
  const excused = new Set<number>();
  const tombstone = (op: RowChange) => store.has(op.table) && op.row.deleted_at !== null && op.row.deleted_at !== undefined;
  const deleted = new Set(ops.filter(tombstone).map((op) => store.lockedIdOf(op.table, op.key)));
  if (deleted.size < 2) return excused;
  const tables = new Map(store.tables.map((t) => [t.name, t]));
  const owned = new Set<string>();
  ops.forEach((op, k) => {
    const by = tables.get(op.table)?.ownedBy;
    const owner = by ? op.row[by.column] : undefined;
    if (!by || typeof owner !== 'string' || !tombstone(op) || !store.has(by.table) || !deleted.has(store.lockedIdOf(by.table, owner))) return;
    excused.add(k);
    owned.add(store.lockedIdOf(op.table, op.key));
  });
  ops.forEach((op, k) => {
    const of = tables.get(op.table)?.partOf;
    if (of && tombstone(op) && owned.has(store.lockedIdOf(of.table, op.key))) excused.add(k);
  });
  return excused;
}

/**
 * For events held for a newer schema and now applied: the time (as a version prefix) this region's
 * schema moved past the one it had when it held them. A write stored here before then could not set
 * the held columns, so where such a write outranks the event, the event still sets those columns.
 */
async function upgradedAt(db: Db, held: NonNullable<ChangeEvent['held']>): Promise<string | null> {
  const rows = await db.$queryRawUnsafe<{ at: Date | null }[]>(
    `SELECT min(finished_at) AS at FROM "_prisma_migrations" WHERE migration_name > $1 AND finished_at IS NOT NULL AND rolled_back_at IS NULL`,
    held.schema,
  );
  const at = rows[0]?.at;
  return at ? String(new Date(at).getTime()).padStart(15, '0') : null;
}
