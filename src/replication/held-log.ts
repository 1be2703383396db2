/**
 * The log of changes held for this region's upgrade: parked `schema-ahead` (columns of a newer schema) or
 * `unknown-table` (a table of a newer version). During a rolling upgrade the regions not yet upgraded hold the
 * upgraded ones' writes, for as long as the upgrade takes: expected, and not an error to page anyone about.
 * Still visible: a warning the first time per origin, reason and tables in this process, then one summary
 * line per HELD_SUMMARY_MS while more come; /admin/replication counts them (failures.parked_by_reason).
 */
import type { Logger } from '../logger';
import type { ParkReason } from './parked';
import type { ChangeEvent } from './tables';

/** The reasons a region's upgrade resolves (it applies them at its start on the newer version). */
export const UPGRADE_REASONS: ReadonlySet<ParkReason> = new Set<ParkReason>(['schema-ahead', 'unknown-table']);

/** How often a region still holding changes for its upgrade says so again. */
export const HELD_SUMMARY_MS = 5 * 60_000;

type Held = { origin: string; reason: ParkReason; tables: string[]; count: number };

export class HeldLog {
  private readonly seen = new Set<string>();
  /** Held since the last summary, per origin, reason and tables (not counting each one's first, logged alone). */
  private readonly since = new Map<string, Held>();
  private lastSummary = Date.now();

  constructor(private readonly log: Logger, private readonly summaryEveryMs = HELD_SUMMARY_MS) {}

  held(items: readonly { event: ChangeEvent; reason: ParkReason; error: string }[]): void {
    for (const { event, reason, error } of items) {
      const tables = [...new Set(event.ops.map((op) => op.table))].sort();
      const key = JSON.stringify([event.origin, reason, tables]);
      if (!this.seen.has(key)) {
        this.seen.add(key);
        this.log.warn(
          { origin: event.origin, reason, tables, changeId: event.changeId, schema: event.schema ?? null, error },
          'change events held until this region is upgraded (expected while a rolling upgrade is under way: they apply when it starts on ' +
            'the newer version; see GET /admin/replication failures); more of this origin and tables are summed up every ' +
            `${Math.round(this.summaryEveryMs / 1000)} s`,
        );
        continue;
      }
      const h = this.since.get(key);
      if (h) h.count += 1;
      else this.since.set(key, { origin: event.origin, reason, tables, count: 1 });
    }
    this.summarize();
  }

  /** The summary line, when one is due and something was held since the last (the applier's loop calls it too). */
  summarize(): void {
    if (this.since.size === 0 || Date.now() - this.lastSummary < this.summaryEveryMs) return;
    const held = [...this.since.values()];
    this.since.clear();
    this.lastSummary = Date.now();
    this.log.warn(
      { held, seconds: Math.round(this.summaryEveryMs / 1000) },
      'still holding change events until this region is upgraded (expected while a rolling upgrade is under way; upgrade this region to apply them)',
    );
  }
}
