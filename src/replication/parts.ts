/**
 * Parts that outlived their owner (ReplicatedTable.partOf). A delete tombstones its row's parts in its own
 * change (WriteContext.deleteParts), but only the parts its region holds: a part first written in another
 * region that had not received the delete yet (a credential's SSO settings set there at that moment) is
 * not among them, and it arrives, or stays, live beside the owner's tombstone in every region. The merge
 * rule keeps it: it is a create the delete never saw. No answer shows it (every route of a part checks its
 * owner first, and an owner's key is never used again), but nothing would ever collect it. So the tombstone
 * collector calls this sweep each cycle, before collecting:
 * - a live part whose owner is a tombstone here is tombstoned by an ordinary replicated write (several
 *   regions may each do it: their tombstones merge into one). Deletion is final: the owner never comes
 *   back, so the other regions may take the tombstone whatever they hold of the owner;
 * - a live part whose owner is absent here and that was created below the cycle's collection cut-off is
 *   deleted here only, as the collector deletes a tombstone, with no change. Its owner was created before
 *   it (a part is written only where its owner is live), below the cut-off too, so every region got that
 *   create long ago: absent, the owner was most likely collected. But absence is no proof of it: a region
 *   can lack a row every other region holds live (an operator discarded its parked create, a dead-lettered
 *   change, a database restored from an older backup), and a replicated tombstone would then delete the
 *   part of a live owner in every region. Here only is enough where the owner was collected: it is a
 *   tombstone or collected in every other region too, whose own sweep takes its copy. (A part above the
 *   cut-off may have arrived before its owner: left alone until the cut-off passes it.)
 * The first kind is found through the owners' newest tombstones, the second by paging through the parts in
 * key order, `pageSize` a cycle, around and around: a cycle's cost stays bounded (~2 ms each at 500 rows,
 * measured with 200,000 parts).
 */
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import type { Replicator } from './replicator';
import type { RowStore } from './row-store';
import { ident } from './table-sql';
import { RAISE_COLLECTED_THROUGH_SQL } from './tombstones';
import { OWNED_DELETE_BATCH, type OwnedBy, type PartOf, type ReplicatedTable } from './tables';

type Part = ReplicatedTable & { partOf: PartOf };
type Owned = ReplicatedTable & { ownedBy: OwnedBy };

/**
 * Changes the sweep writes per cycle for rows that outlived their owner (ReplicatedTable.ownedBy),
 * OWNED_DELETE_BATCH rows each: 1,000 rows a cycle. A change takes several round trips a row, so 25 of them
 * (h234's review) kept one cycle, and with it the collection behind it, busy for tens of seconds; five keep a
 * cycle to seconds, and a deleted organization's rows are unreachable while they wait.
 */
export const OWNED_WRITES_PER_CYCLE = 5;
/** Where the paging through an owner's tombstones starts (before every deleted_at). */
const OWNER_START = { at: '1970-01-01T00:00:00.000Z', key: '' };

export interface PartSweepDeps {
  db: Db;
  repl: Pick<Replicator, 'write'>;
  store: Pick<RowStore, 'partsOf' | 'ownedOf' | 'keyTypeOf'>;
  tables: readonly ReplicatedTable[];
  log: Logger;
  /** Parts looked at per table and cycle, of each kind. */
  pageSize: number;
}

/** Parts a sweep took: tombstoned by a replicated write (owner a tombstone here), deleted here only (owner absent). */
export interface PartsSwept {
  tombstoned: number;
  deletedHere: number;
}

export class PartSweep {
  /** Where each part table's paging resumes (its last key seen; '' from the start). */
  private readonly cursors = new Map<string, string>();
  /** Where the paging through each owner table's tombstones resumes (by deleted_at, then key). */
  private readonly ownerCursors = new Map<string, { at: string; key: string }>();
  /** What this process swept since it started (GET /admin/replication, /metrics). */
  readonly swept: PartsSwept = { tombstoned: 0, deletedHere: 0 };

  constructor(private readonly d: PartSweepDeps) {}

  /** Tombstones the orphaned parts found this cycle; `cutoff`: the cycle's collection cut-off (null: none). */
  async sweep(cutoff: string | null): Promise<number> {
    const cycle: PartsSwept = { tombstoned: 0, deletedHere: 0 };
    for (const owner of this.d.tables) {
      for (const part of this.d.store.partsOf(owner.name)) {
        for (const key of await this.ownerDeleted(owner, part)) cycle.tombstoned += await this.tombstone(owner, key);
        if (cutoff === null) continue;
        for (const key of await this.ownerCollected(owner, part, cutoff)) cycle.deletedHere += await this.dropHere(owner, part, key, cutoff);
      }
    }
    let writes = OWNED_WRITES_PER_CYCLE;
    for (const owner of this.d.tables) {
      const owned = this.d.store.ownedOf(owner.name);
      if (owned.length === 0) continue;
      for (const key of await this.ownersOfOutlived(owner, owned)) {
        if (writes <= 0) break;
        const n = await this.tombstoneOwned(owner, key, writes);
        writes -= n;
        cycle.tombstoned += n;
      }
    }
    this.swept.tombstoned += cycle.tombstoned;
    this.swept.deletedHere += cycle.deletedHere;
    const n = cycle.tombstoned + cycle.deletedHere;
    if (n > 0) this.d.log.info({ swept: cycle }, 'tombstoned or deleted rows that outlived the row they belong to (written where its delete had not arrived yet)');
    return n;
  }

  /**
   * Among the owner's newest `pageSize` tombstones (through its partial index on deleted_at), those with a live
   * part: one index probe each. (A join let the planner scan every part: ~200 ms a cycle at 200,000 parts.)
   * An older one's part is found once its owner is collected (ownerCollected).
   */
  private async ownerDeleted(owner: ReplicatedTable, part: Part): Promise<string[]> {
    const o = ident(owner.name), p = ident(part.name), ok = ident(owner.key), pk = ident(part.key);
    const rows = await this.d.db.$queryRawUnsafe<{ key: string }[]>(
      `WITH t AS (SELECT ${ok} AS k FROM ${o} WHERE deleted_at IS NOT NULL ORDER BY deleted_at DESC LIMIT $1)
       SELECT t.k::text AS key FROM t WHERE (SELECT p.deleted_at IS NULL FROM ${p} p WHERE p.${pk} = t.k)`,
      this.d.pageSize,
    );
    return rows.map((r) => r.key);
  }

  private async ownerCollected(owner: ReplicatedTable, part: Part, cutoff: string): Promise<string[]> {
    const o = ident(owner.name), p = ident(part.name), ok = ident(owner.key), pk = ident(part.key);
    const after = this.cursors.get(part.name) ?? '';
    const from = after === '' ? 'TRUE' : `${pk} > $3::${this.d.store.keyTypeOf(part.name)}`;
    const rows = await this.d.db.$queryRawUnsafe<{ key: string; orphan: boolean }[]>(
      `WITH page AS (SELECT ${pk} AS k, deleted_at, created_version FROM ${p} WHERE ${from} ORDER BY ${pk} LIMIT $1)
       SELECT page.k::text AS key, (page.deleted_at IS NULL AND page.created_version < $2
                                    AND NOT EXISTS (SELECT FROM ${o} o WHERE o.${ok} = page.k)) AS orphan
         FROM page ORDER BY page.k`,
      ...(after === '' ? [this.d.pageSize, cutoff] : [this.d.pageSize, cutoff, after]),
    );
    // A short page reached the end: the next cycle starts again from the first key.
    this.cursors.set(part.name, rows.length < this.d.pageSize ? '' : (rows[rows.length - 1]?.key ?? ''));
    return rows.filter((r) => r.orphan).map((r) => r.key);
  }

  /**
   * Owner tombstones with live owned rows (ReplicatedTable.ownedBy): among the owner's newest `pageSize`
   * tombstones (a delete's remainder, rows written concurrently in another region), and among a page of all of
   * them, paged by deleted_at around and around (an older one's), both through its partial index on
   * deleted_at; an index probe per owned table each.
   */
  private async ownersOfOutlived(owner: ReplicatedTable, owned: readonly Owned[]): Promise<string[]> {
    const o = ident(owner.name), ok = ident(owner.key);
    const outlived = owned.map((t) => `EXISTS (SELECT FROM ${ident(t.name)} x WHERE x.${ident(t.ownedBy.column)} = t.k AND x.deleted_at IS NULL)`).join(' OR ');
    const newest = await this.d.db.$queryRawUnsafe<{ key: string }[]>(
      `WITH t AS (SELECT ${ok} AS k FROM ${o} WHERE deleted_at IS NOT NULL ORDER BY deleted_at DESC LIMIT $1)
       SELECT t.k::text AS key FROM t WHERE ${outlived}`,
      this.d.pageSize,
    );
    const from = this.ownerCursors.get(owner.name) ?? OWNER_START;
    const page = await this.d.db.$queryRawUnsafe<{ key: string; at: Date; outlived: boolean }[]>(
      `WITH t AS (SELECT ${ok} AS k, deleted_at AS at FROM ${o}
                   WHERE deleted_at IS NOT NULL AND deleted_at >= $2::timestamptz AND (deleted_at > $2::timestamptz OR ${ok}::text > $3)
                   ORDER BY deleted_at, ${ok}::text LIMIT $1)
       SELECT t.k::text AS key, t.at, (${outlived}) AS outlived FROM t ORDER BY t.at, t.k::text`,
      this.d.pageSize, from.at, from.key,
    );
    const last = page[page.length - 1];
    this.ownerCursors.set(owner.name, page.length < this.d.pageSize || !last ? OWNER_START : { at: last.at.toISOString(), key: last.key });
    return [...new Set([...newest.map((r) => r.key), ...page.filter((r) => r.outlived).map((r) => r.key)])];
  }

  /**
   * Tombstones the live rows owned by `key` while it is still a tombstone under the write's locks, in changes
   * of OWNED_DELETE_BATCH rows, at most `writes` of them: how many it wrote. Every region may do it; their
   * tombstones merge into one.
   */
  private async tombstoneOwned(owner: ReplicatedTable, key: string, writes: number): Promise<number> {
    let n = 0;
    try {
      while (n < writes) {
        const { value: more, event } = await this.d.repl.write(async (w) => {
          const stored = await w.lock(owner, key);
          if (!stored?.deleted_at) return false;
          return w.deleteOwned(owner, key, new Date().toISOString(), OWNED_DELETE_BATCH);
        });
        if (event) n++;
        if (!more || !event) break;
      }
    } catch (err) {
      // A collision or the database away: the next cycle finds the rows again.
      this.d.log.debug({ err: (err as Error).message, table: owner.name, key }, 'could not tombstone the rows of a deleted row; will retry');
    }
    return n;
  }

  /** Tombstones `key`'s parts if its owner is still a tombstone under the write's locks: 1 if it wrote. */
  private async tombstone(owner: ReplicatedTable, key: string): Promise<number> {
    try {
      const { event } = await this.d.repl.write(async (w) => {
        const stored = await w.lock(owner, key);
        // Live again (never, for a key not used again) or absent: not this kind (see dropHere).
        if (!stored?.deleted_at) return;
        await w.deleteParts(owner, key, new Date().toISOString());
      });
      return event ? 1 : 0;
    } catch (err) {
      // A collision or the database away: the next cycle finds the part again.
      this.d.log.debug({ err: (err as Error).message, table: owner.name, key }, 'could not tombstone a part of a deleted row; will retry');
      return 0;
    }
  }

  /**
   * Deletes the live part `key` here, with no change, if its owner is still absent and it is still below
   * `cutoff` (see the module comment: this region may merely lack a live owner). Under both rows' per-key
   * locks, taken without waiting as the collector takes them (a row someone holds waits for the next cycle),
   * and read after them. Raises the region's collection cut-off as a collection does: a late change of the
   * part older than it is not applied here. 1 if it deleted.
   */
  private async dropHere(owner: ReplicatedTable, part: Part, key: string, cutoff: string): Promise<number> {
    const o = ident(owner.name), p = ident(part.name), ok = ident(owner.key), pk = ident(part.key);
    const type = this.d.store.keyTypeOf(part.name);
    try {
      return await this.d.db.$transaction(async (tx) => {
        const [locked] = await tx.$queryRawUnsafe<{ ok: boolean }[]>(
          'SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AND pg_try_advisory_xact_lock(hashtextextended($2, 0)) AS ok',
          `${owner.name}:${key}`, `${part.name}:${key}`,
        );
        if (!locked?.ok) return 0;
        // A statement of its own: its snapshot is taken after the locks, so it sees an owner applied meanwhile.
        const n = await tx.$executeRawUnsafe(
          `DELETE FROM ${p} WHERE ${pk} = $1::${type} AND deleted_at IS NULL AND created_version < $2
             AND NOT EXISTS (SELECT FROM ${o} WHERE ${ok} = $1::${type})`,
          key, cutoff,
        );
        if (n > 0) await tx.$executeRawUnsafe(RAISE_COLLECTED_THROUGH_SQL, cutoff);
        return n;
      });
    } catch (err) {
      this.d.log.debug({ err: (err as Error).message, table: part.name, key }, 'could not delete a part whose owner is absent; will retry');
      return 0;
    }
  }
}
