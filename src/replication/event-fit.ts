/**
 * Why this region cannot apply a change event as it is, for now: a table or columns of a newer version (a
 * rolling upgrade), or a version too far ahead of its clock. Such an event is parked at once (parked.ts).
 */
import type { HybridClock } from './hlc';
import type { Parsed } from './inbox-events';
import type { ParkReason } from './parked';
import type { RowStore } from './row-store';
import type { ChangeEvent } from './tables';

/** An event read from the inbox that is to be parked, and why (whyUnfit's reason, or apply-failed). */
export type Unfit = { p: Parsed; reason: ParkReason; error: string };

/** Why this region cannot apply an event as it is (then it is parked at once), or null. */
export function whyUnfit(d: { store: RowStore; clock: HybridClock }, event: ChangeEvent): { reason: ParkReason; error: string } | null {
  const unknown = [...new Set(event.ops.map((op) => op.table).filter((t) => !d.store.has(t)))];
  // A table this version does not know (a rolling upgrade): parked until this region is upgraded.
  if (unknown.length) return { reason: 'unknown-table', error: `table(s) not replicated by this version: ${unknown.join(', ')}` };
  // Columns of a newer schema: held until this region is upgraded, never applied partially.
  const newer = schemaAhead(d.store, event);
  if (newer) {
    const cols = Object.entries(newer).map(([t, c]) => `${t}(${c.join(', ')})`).join(', ');
    return { reason: 'schema-ahead', error: `event of schema ${event.schema ?? '(unknown)'} carries column(s) this region's schema ${d.store.schema || '(none)'} lacks: ${cols}` };
  }
  // A version too far ahead of this region's clock (its origin's clock runs ahead): neither applied nor
  // observed, or it would drag this clock along and win every conflict. Parked until the clocks agree.
  const { clock } = d;
  const ahead = event.ops.find((op) => !clock.admits(op.version));
  if (ahead) {
    return { reason: 'clock-skew', error: `version ${ahead.version} is ${clock.aheadBy(ahead.version)} ms ahead of this region's clock (maxClockSkewMs ${clock.maxSkewMs})` };
  }
  return null;
}

/**
 * Per table, the columns the event's rows carry that this region's tables lack, when they are a newer
 * schema's; null when there are none. Columns of an origin whose schema is older than ours are columns
 * this region dropped (contract step): ignored, and the rest applies. Without a schema (an event of an
 * older version) or with an equal one, extra columns are held too: never silently discarded.
 */
export function schemaAhead(store: RowStore, event: ChangeEvent): Record<string, string[]> | null {
  if (event.schema !== undefined && event.schema < store.schema) return null;
  let out: Record<string, string[]> | null = null;
  for (const op of event.ops) {
    const extra = store.extraColumns(op.table, op.row);
    if (extra.length === 0) continue;
    out ??= {};
    out[op.table] = [...new Set([...(out[op.table] ?? []), ...extra])].sort();
  }
  return out;
}
