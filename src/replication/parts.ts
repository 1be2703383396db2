/**
 * Parts that outlived their owner (ReplicatedTable.partOf). A delete tombstones its row's parts in its own
 * change (WriteContext.deleteParts), but only the parts its region holds: a part first written in another
 * region that had not received the delete yet (a credential's SSO settings set there at that moment) is
 * not among them, and it arrives, or stays, live beside the owner's tombstone in every region. The merge
 * rule keeps it: it is a create the delete never saw. No answer shows it (every route of a part checks its
 * owner first, and an owner's key is never used again), but nothing would ever collect it. So the tombstone
 * collector calls this sweep each cycle, before collecting; it tombstones such parts with an ordinary
 * replicated write (several regions may each do it: their tombstones merge into one):
 * - a live part whose owner is a tombstone here: deletion is final, the owner never comes back;
 * - a live part whose owner is absent here and that was created below the cycle's collection cut-off. A part
 *   is written only where its owner is live, so the owner was created before it, below the cut-off too,
 *   and every region applied that create long ago: absent means its tombstone was collected. (A part above
 *   the cut-off may have arrived before its owner: left alone until the cut-off passes it.)
 * The first kind is found through the owners' newest tombstones, the second by paging through the parts in
 * key order, `pageSize` a cycle, around and around: a cycle's cost stays bounded (~2 ms each at 500 rows,
 * measured with 200,000 parts).
 */
import type { Db } from '../db/client';
import type { Logger } from '../logger';
import type { Replicator } from './replicator';
import type { RowStore } from './row-store';
import { ident } from './table-sql';
import type { PartOf, ReplicatedTable } from './tables';

type Part = ReplicatedTable & { partOf: PartOf };

export interface PartSweepDeps {
  db: Db;
  repl: Pick<Replicator, 'write'>;
  store: Pick<RowStore, 'partsOf' | 'keyTypeOf'>;
  tables: readonly ReplicatedTable[];
  log: Logger;
  /** Parts looked at per table and cycle, of each kind. */
  pageSize: number;
}

export class PartSweep {
  /** Where each part table's paging resumes (its last key seen; '' from the start). */
  private readonly cursors = new Map<string, string>();
  /** Parts this process tombstoned since it started. */
  swept = 0;

  constructor(private readonly d: PartSweepDeps) {}

  /** Tombstones the orphaned parts found this cycle; `cutoff`: the cycle's collection cut-off (null: none). */
  async sweep(cutoff: string | null): Promise<number> {
    let n = 0;
    for (const owner of this.d.tables) {
      for (const part of this.d.store.partsOf(owner.name)) {
        const keys = [...(await this.ownerDeleted(owner, part)), ...(cutoff === null ? [] : await this.ownerCollected(owner, part, cutoff))];
        for (const key of new Set(keys)) n += await this.tombstone(owner, key, cutoff);
      }
    }
    this.swept += n;
    if (n > 0) this.d.log.info({ swept: n }, 'tombstoned rows that outlived the row they belong to (written where its delete had not arrived yet)');
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

  /** Tombstones `key`'s parts if its owner is still deleted or collected under the write's locks: 1 if it wrote. */
  private async tombstone(owner: ReplicatedTable, key: string, cutoff: string | null): Promise<number> {
    try {
      const { event } = await this.d.repl.write(async (w) => {
        const stored = await w.lock(owner, key);
        // Absent and not known collected: its create may be on its way (never taken for collected).
        if (stored ? !stored.deleted_at : cutoff === null) return;
        await w.deleteParts(owner, key, new Date().toISOString());
      });
      return event ? 1 : 0;
    } catch (err) {
      // A collision or the database away: the next cycle finds the part again.
      this.d.log.debug({ err: (err as Error).message, table: owner.name, key }, 'could not tombstone a part of a deleted row; will retry');
      return 0;
    }
  }
}
