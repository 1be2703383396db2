/**
 * The collection horizon's check on an apply (replication_horizon.collected_through): which changes are
 * older than a tombstone this region has collected, so that applying them would bring their row back.
 */
import { created, type Stored } from './merge-rule';
import type { Pipeline } from './queryable';
import { HORIZON_SQL, type Normalized, type TableSql } from './table-sql';

/** Changes the collection horizon rules out, and the horizon of each table. */
export interface Below {
  changes: Set<Normalized>;
  throughOf: (table: string) => string;
}

export class HorizonCheck {
  /**
   * `d`: each table's SQL and whether the database records a horizon, as last loaded (a reload replaces
   * both). What it rules out is not counted here: the apply's transaction may still roll back (and be tried
   * again), so the caller counts it once committed (ApplyResult.belowHorizon, RowStore.countBelowHorizon).
   */
  constructor(private readonly d: { sqlOf(tableName: string): TableSql; hasHorizon(): boolean }) {}

  /**
   * Changes of a row created before this region's collection horizon (replication_horizon.collected_through)
   * when the row is absent here, or held as a later create of its key: that create was applied everywhere
   * before the horizon, so the row's absence (or a newer incarnation) means its tombstone was collected,
   * and the change is older than that deletion (a late update, a redelivery, a replayed event). Applying
   * it would bring the row back (or, by "earliest create wins", replace the newer incarnation). Read under
   * the per-key locks the caller holds, which the collector takes too, so a tombstone cannot vanish in
   * between. Tables pruned locally are left out: their rows go without tombstones (tables.ts).
   */
  async collected(run: Pipeline, changes: readonly Normalized[], before: ReadonlyMap<string, Stored>, prefetched?: string): Promise<Below> {
    if (!this.d.hasHorizon() || !changes.some((c) => this.mayBeBelow(c, before))) return { changes: new Set(), throughOf: () => '' };
    const through = prefetched ?? String(((await run.run([{ sql: HORIZON_SQL, values: [] }]))[0]?.[0] as { through?: string } | undefined)?.through ?? '');
    return this.ruledOut(changes, before, () => through);
  }

  /** A change of a row absent here, or held as a later create: its row's tombstone may have been collected. */
  private mayBeBelow(c: Normalized, before: ReadonlyMap<string, Stored>): boolean {
    if (this.d.sqlOf(c.table).table.prunedLocally) return false;
    const b = before.get(c.id);
    return !b || created(c.state) < created(b);
  }

  /** The changes the horizon rules out (see collected), given each table's collection horizon. */
  ruledOut(changes: readonly Normalized[], before: ReadonlyMap<string, Stored>, throughOf: (table: string) => string): Below {
    if (!this.d.hasHorizon()) return { changes: new Set(), throughOf };
    const old = changes.filter((c) => {
      const through = throughOf(c.table);
      const b = before.get(c.id);
      return through !== '' && this.mayBeBelow(c, before) && created(c.state) < through && (!b || created(b) >= through);
    });
    return { changes: new Set(old), throughOf };
  }
}
