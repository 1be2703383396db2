/**
 * The apply of row changes by the merge rule (RowStore.apply): local writes' and remote changes' rows,
 * in one round trip where a pipelined transaction allows it, else in steps; then each change judged
 * applied or superseded.
 */
import type { Db } from '../db/client';
import { compareStates, stateOf, storedOf, type MergeState, type OpOutcome, type Stored, type StoredRow } from './merge-rule';
import { oneByOne, type Pipeline, type Queryable, type Statement } from './queryable';
import type { RowGuesses } from './row-guesses';
import { HorizonCheck, type Below } from './row-horizon';
import { applyFor, columnSet, HORIZON_SQL, ident, lockAllStatement, lockedId, normalize, upsertFor, type Normalized, type TableSql } from './table-sql';
import { isPrunable, type ReplicatedTable, type Row, type RowChange } from './tables';

export interface ApplyOptions {
  /** Take the rows' per-key locks first (lockAll), in the same round trip as the reads. */
  lock?: boolean;
  /** Nothing follows in this transaction: a Pipeline commits with the writes' round trip. */
  last?: boolean;
  /**
   * Changes that create their row though their version is not its creation stamp: the second and later rows
   * of a transaction that created several (each carries the stamp of the transaction's first write). See
   * creatingOps.
   */
  creates?: ReadonlySet<RowChange>;
  /** Reads of the caller's, sent at the head of the first round trip (none of their own): their rows in ApplyResult.reads. */
  reads?: readonly Statement[];
}

export interface ApplyResult {
  /** Rows inserted or replaced. */
  changed: number;
  /** One per change given, in the same order. */
  outcomes: OpOutcome[];
  /**
   * Changes the collection horizon ruled out (not applied: their row's tombstone was collected here; see
   * HorizonCheck). Counted by the caller once its transaction commits (RowStore.countBelowHorizon).
   */
  belowHorizon: number;
  /** The rows of ApplyOptions.reads, in their order, when there were any (none when nothing was sent: every change pruned). */
  reads?: unknown[][];
}

export class RowApply {
  private readonly horizon: HorizonCheck;

  /**
   * `d`: each table's SQL and whether the database records a horizon, as last loaded (a reload replaces
   * both), and the guesses an apply makes stale.
   */
  constructor(private readonly d: { db: Db; guesses: RowGuesses; sqlOf(tableName: string): TableSql; hasHorizon(): boolean }) {
    this.horizon = new HorizonCheck(d);
  }

  /** See RowStore.apply. */
  async apply(tx: Queryable | Pipeline, changes: readonly RowChange[], locked?: ReadonlyMap<string, Row | null>, opts: ApplyOptions = {}): Promise<ApplyResult> {
    // A Pipeline sends each step's statements in one round trip: the locks, the stored states and the
    // horizon in the first; the writes and the commit in the second.
    const pipelined = 'run' in tx;
    const run = pipelined ? tx : oneByOne(tx);
    // A row its table's cleanup would delete at once is not stored (taken as applied and pruned).
    const pruned = changes.map((c) => isPrunable(this.d.sqlOf(c.table).table, c.row));
    if (pruned.some(Boolean)) {
      const kept = changes.filter((_, i) => !pruned[i]);
      const r: ApplyResult = kept.length || opts.last ? await this.apply(tx, kept, locked, opts) : { changed: 0, outcomes: [], belowHorizon: 0 };
      let k = 0;
      const outcomes = pruned.map((p): OpOutcome => (p ? { applied: true } : (r.outcomes[k++] as OpOutcome)));
      return { changed: r.changed, outcomes, belowHorizon: r.belowHorizon, ...(r.reads ? { reads: r.reads } : {}) };
    }
    const norm = changes.map((c) => normalize(c, this.d.sqlOf(c.table), opts.creates?.has(c) === true));
    const known = locked && norm.every((c) => locked.has(lockedId(c.table, c.rowKey))) ? knownStates(norm, locked) : null;
    // The same lock keys as RowStore.lock and lockAll: the keys as the changes name them.
    const lock = opts.lock ? lockAllStatement(changes) : null;
    const single = pipelined && opts.last && !known ? this.singleTripGroups(norm) : null;
    const r = single ? await this.applyInOneTrip(run, norm, single, lock, opts.reads ?? []) : await this.applyInSteps(run, norm, known, lock, opts, pipelined);
    // What this changed is not what a guess of these keys holds (a guess would fail its check; see RowStore.guess).
    for (const c of norm) this.d.guesses.forget(c.id);
    return this.judge(norm, r, opts.last && pipelined ? oneByOne(this.d.db) : run);
  }

  /**
   * The one-round-trip apply (a Pipeline that commits): possible when every row appears once in the batch
   * and each table's rows carry one column set, so what to write does not depend on what is stored. Then
   * one statement per table reads the stored states and the horizon and upserts the rows the horizon does
   * not rule out, all on one snapshot taken after the locks (table-sql.ts applyFor); null when not possible.
   */
  private singleTripGroups(norm: readonly Normalized[]): Map<string, { cols: string[]; changes: Normalized[] }> | null {
    const ids = new Set<string>();
    const groups = new Map<string, { cols: string[]; changes: Normalized[] }>();
    for (const c of norm) {
      if (ids.has(c.id)) return null;
      ids.add(c.id);
      const cols = columnSet(this.d.sqlOf(c.table), c);
      const g = groups.get(c.table);
      if (g && !sameList(g.cols, cols)) return null;
      if (g) g.changes.push(c);
      else groups.set(c.table, { cols, changes: [c] });
    }
    return groups;
  }

  private async applyInOneTrip(
    run: Pipeline,
    norm: readonly Normalized[],
    groups: Map<string, { cols: string[]; changes: Normalized[] }>,
    lock: Statement | null,
    extra: readonly Statement[],
  ): Promise<Gathered> {
    const tables = [...groups];
    const statements: Statement[] = tables.map(([table, g]) => ({
      sql: applyFor(this.d.sqlOf(table), g.cols, this.d.hasHorizon()),
      prepare: true,
      values: [JSON.stringify(g.changes.map((c) => c.row)), g.changes.map((c) => c.rowKey)],
    }));
    const ahead = [...extra, ...(lock ? [lock] : []), ...this.prunes(norm)];
    const res = await run.run([...ahead, ...statements], true);
    const before = new Map<string, Stored>();
    const through = new Map<string, string>();
    const written = new Set<string>();
    let changed = 0;
    tables.forEach(([table], i) => {
      const row = res[ahead.length + i]?.[0] as { through: string; before: StoredRow[]; written: { key: string }[] } | undefined;
      through.set(table, row?.through ?? '');
      for (const r of row?.before ?? []) before.set(lockedId(table, r.key), storedOf(r));
      for (const w of row?.written ?? []) written.add(lockedId(table, w.key));
      changed += row?.written.length ?? 0;
    });
    const below = this.horizon.ruledOut(norm, before, (t) => through.get(t) ?? '');
    const newest = new Map(norm.filter((c) => !below.changes.has(c)).map((c) => [c.id, c]));
    const toWrite = new Set([...newest.values()].filter((c) => !before.has(c.id) || compareStates(c.state, before.get(c.id) as Stored) > 0).map((c) => c.row));
    return { before, below, newest, toWrite, written, changed, ...(extra.length ? { reads: res.slice(0, extra.length) } : {}) };
  }

  private async applyInSteps(
    run: Pipeline,
    norm: readonly Normalized[],
    known: Map<string, Stored> | null,
    lock: Statement | null,
    opts: ApplyOptions,
    pipelined: boolean,
  ): Promise<Gathered> {
    const first: Statement[] = [...(opts.reads ?? [])];
    if (lock) first.push(lock);
    // What this region's cleanup may delete goes first (not when the states are known: a local write's).
    if (!known) first.push(...this.prunes(norm));
    const ahead = first.length;
    const reads = known ? [] : this.stateReads(norm);
    first.push(...reads);
    // The horizon is read ahead only where it costs no round trip of its own; otherwise when needed.
    const horizonAhead = pipelined && this.d.hasHorizon();
    if (horizonAhead) first.push({ sql: HORIZON_SQL, values: [] });
    const got = first.length ? await run.run(first) : [];
    const before = known ?? this.statesFrom(reads.length ? got.slice(ahead, ahead + reads.length) : [], reads);
    const prefetched = horizonAhead ? String((got[got.length - 1]?.[0] as { through?: string } | undefined)?.through ?? '') : undefined;
    const below = await this.horizon.collected(run, norm, before, prefetched);
    const newest = new Map<string, Normalized>();
    for (const c of norm) {
      if (below.changes.has(c)) continue;
      const seen = newest.get(c.id);
      if (!seen || compareStates(seen.state, c.state) < 0) newest.set(c.id, c);
    }
    // Grouped by table and column set: each row updates only the columns it carries (and this table has;
    // a column dropped here is left out).
    const groups = new Map<string, { table: string; cols: string[]; rows: Row[] }>();
    const toWrite = new Set<Row>();
    for (const c of newest.values()) {
      const b = before.get(c.id);
      if (b && compareStates(c.state, b) <= 0) continue; // nothing to write
      const cols = columnSet(this.d.sqlOf(c.table), c);
      const gid = `${c.table}\u0000${cols.join(',')}`;
      const g = groups.get(gid) ?? { table: c.table, cols, rows: [] };
      g.rows.push(c.row);
      groups.set(gid, g);
      toWrite.add(c.row);
    }
    const writes: Statement[] = [...groups.values()].map((g) => ({ sql: upsertFor(this.d.sqlOf(g.table), g.cols), values: [JSON.stringify(g.rows)], prepare: true }));
    const results = writes.length || opts.last ? await run.run(writes, opts.last) : [];
    let changed = 0;
    const written = new Set<string>();
    [...groups.values()].forEach((g, i) => {
      const rows = (results[i] ?? []) as { key: string }[];
      changed += rows.length;
      for (const w of rows) written.add(lockedId(g.table, w.key));
    });
    return { before, below, newest, toWrite, written, changed, ...(opts.reads?.length ? { reads: got.slice(0, opts.reads.length) } : {}) };
  }

  /**
   * Per table of the batch that declares rows its own cleanup may delete (ReplicatedTable.prunable): a
   * statement deleting the batch's rows that meet it, as if the cleanup had just run.
   */
  private prunes(norm: readonly Normalized[]): Statement[] {
    const keys = new Map<string, string[]>();
    for (const c of norm) {
      if (!this.d.sqlOf(c.table).table.prunable) continue;
      const list = keys.get(c.table) ?? [];
      list.push(c.rowKey);
      keys.set(c.table, list);
    }
    return [...keys].map(([table, list]) => {
      const s = this.d.sqlOf(table);
      const p = s.table.prunable as NonNullable<ReplicatedTable['prunable']>;
      return {
        sql: `DELETE FROM ${ident(table)} WHERE ${ident(s.table.key)} = ANY($1::${s.keyType}[]) AND ${ident(p.column)} < now() - make_interval(secs => $2::float8 / 1000)`,
        values: [list, p.keepMs],
        exec: true,
        prepare: true,
      };
    });
  }

  /** Per change, whether the row holds it, from what was stored before and what was written. */
  private async judge(norm: readonly Normalized[], r: Gathered, readAfter: Pipeline): Promise<ApplyResult> {
    const { before, below, newest, toWrite, written, changed, reads } = r;
    // A row that should have been written but was not: a writer that does not take the per-key locks got
    // there first (a safety net: every writer takes them). Read it back, to name what won: in the same
    // transaction, or just after it when it has committed already.
    const lostRace = new Set([...newest.values()].filter((c) => toWrite.has(c.row) && !written.has(c.id)).map((c) => c.id));
    let after = new Map<string, Stored>();
    if (lostRace.size) {
      const again = this.stateReads([...newest.values()].filter((c) => lostRace.has(c.id)));
      try {
        after = this.statesFrom(await readAfter.run(again), again);
      } catch {
        // Read after the commit, and failed: the apply holds; what won is not known, but the change did not.
        for (const id of lostRace) after.set(id, { version: '', createdVersion: '', originRegion: '', deleted: false });
      }
    }
    // The state each row held after the changes judged so far (only their merge states are compared). What a
    // row holds at the end (finalState) is worked out only for a change that did not hold: its winner.
    const running = new Map<string, MergeState | undefined>();
    const outcomes = norm.map((c): OpOutcome => {
      const raced = lostRace.has(c.id) ? after.get(c.id) : undefined;
      if (below.changes.has(c)) {
        // The row's tombstone was collected here: a deletion holds; anything else lost to it.
        if (c.state.deleted) return { applied: true };
        const w = raced ?? finalState(before.get(c.id), newest.get(c.id)) ?? { version: below.throughOf(c.table), createdVersion: c.state.createdVersion, originRegion: '', deleted: true };
        return { applied: false, winner: { table: c.table, key: c.rowKey, ...w } };
      }
      const held = running.has(c.id) ? running.get(c.id) : before.get(c.id);
      const cmp = held ? compareStates(c.state, held) : 1;
      if (cmp > 0) running.set(c.id, c.state);
      // Judged against what the row held before it, or, when a concurrent writer won the race, against that.
      const against = raced ?? held;
      const holds = (raced ? compareStates(c.state, raced) >= 0 : cmp >= 0) || deletionHolds(c.state, against) || creationHolds(c, against);
      if (holds) return { applied: true };
      const final = raced ?? finalState(before.get(c.id), newest.get(c.id));
      if (!final) return { applied: true };
      return { applied: false, winner: { table: c.table, key: c.rowKey, version: final.version, createdVersion: final.createdVersion, originRegion: final.originRegion, deleted: final.deleted } };
    });
    return { changed, outcomes, belowHorizon: below.changes.size, ...(reads ? { reads } : {}) };
  }

  /** Reads of the stored merge states of the rows these changes touch: one statement per table. */
  private stateReads(changes: readonly Normalized[]): (Statement & { table: string })[] {
    return [...new Set(changes.map((c) => c.table))].map((tableName) => ({
      table: tableName,
      sql: this.d.sqlOf(tableName).selectStates,
      values: [[...new Set(changes.filter((c) => c.table === tableName).map((c) => c.rowKey))]],
    }));
  }

  /** The states those reads returned (`rows[i]` answering `reads[i]`), by table and key. */
  private statesFrom(rows: readonly unknown[][], reads: readonly { table: string }[]): Map<string, Stored> {
    const out = new Map<string, Stored>();
    reads.forEach(({ table }, i) => {
      for (const r of (rows[i] ?? []) as StoredRow[]) out.set(lockedId(table, r.key), storedOf(r));
    });
    return out;
  }
}

/** What an apply read and wrote, for judging each change (RowApply.judge). */
interface Gathered {
  before: Map<string, Stored>;
  below: Below;
  /** Per row, the change the batch writes (the greatest not ruled out). */
  newest: Map<string, Normalized>;
  /** The rows that outrank what was stored: written unless a concurrent writer got there first. */
  toWrite: Set<Row>;
  /** Rows written, by table and key. */
  written: Set<string>;
  changed: number;
  /** The rows of ApplyOptions.reads, when there were any. */
  reads?: unknown[][];
}

/** The stored states of rows this transaction holds the locks of and has read since (no need to read them again). */
function knownStates(changes: readonly Normalized[], locked: ReadonlyMap<string, Row | null>): Map<string, Stored> {
  const out = new Map<string, Stored>();
  for (const c of changes) {
    const row = locked.get(lockedId(c.table, c.rowKey));
    if (!row) continue;
    out.set(c.id, { ...stateOf({ version: String(row.version), row }), originRegion: String(row.origin_region ?? '') });
  }
  return out;
}

/** A deletion holds when the row (of the same create) is deleted, whichever tombstone is kept. */
function deletionHolds(change: MergeState, held: MergeState | undefined): boolean {
  return change.deleted && held?.deleted === true && held.createdVersion === change.createdVersion;
}

/**
 * A create whose row is here, as a later state of the very row it created (same creation stamp): an update
 * or a deletion written where the create had been applied got here first. The create is not lost: the row
 * exists because of it. (Judged superseded, an all_regions create answered 409, "not kept", while every
 * region held the credential, and a client that retried made a second one.) Every row of a create of
 * several counts (ApplyOptions.creates): its second row, judged superseded by a deletion of the credential
 * that got here first, made the create's status "superseded" and its idempotent replay a 409.
 */
function creationHolds(change: Normalized, held: MergeState | undefined): boolean {
  return change.creates && held?.createdVersion === change.state.createdVersion;
}

function finalState(before: Stored | undefined, newest: Normalized | undefined): Stored | undefined {
  if (!newest) return before;
  if (before && compareStates(newest.state, before) <= 0) return before;
  return { ...newest.state, originRegion: String(newest.row.origin_region ?? '') };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
