/**
 * Rows as this process last saw them committed, so that a local write can skip reading the row it locks:
 * the write takes the row's lock and *checks* the guess in the same round trip as its upsert, its outbox
 * row and COMMIT (RowStore.guess). A guess is only ever a guess: the check runs under the row's lock, after
 * whatever held the lock before committed, and compares the stored row, every column, with the guessed one
 * (jsonb equality); when they differ (an apply from another region, another process, a hand-made fix that
 * kept the version, a collected tombstone, a restore) the transaction fails with STALE_GUESS before
 * COMMIT and the write runs again, reading the row (Replicator.write).
 *
 * Bounded by count and by bytes (the rows' JSON text); a table with large rows (IdP metadata documents) is
 * declared unguessed and not kept at all (ReplicatedTable.unguessed). Kept: rows read under a local write's lock, and rows a local write stored, as Postgres
 * returned them (to_jsonb), never as the feature built them: a column the database filled in (a default)
 * is in the guess as it is in the table.
 */
import type { Row } from './tables';

/** The SQLSTATE of a failed guess check: the row is not stored as guessed. */
export const STALE_GUESS = 'RG001';

const MAX_ROWS = 4096;
/** Bytes counted as the rows' JSON text length (UTF-16 code units: bytes for ASCII text). */
const MAX_BYTES = 16 * 1024 * 1024;
/** A row larger than this is not kept (its JSON text's length). */
const MAX_ROW_BYTES = 16 * 1024;

export class RowGuesses {
  private readonly rows = new Map<string, { text: string; version: string }>();
  private bytes = 0;

  constructor(private readonly limits = { rows: MAX_ROWS, bytes: MAX_BYTES, rowBytes: MAX_ROW_BYTES }) {}

  get size(): number {
    return this.rows.size;
  }

  /**
   * A fresh copy of the row last kept under `id`, and its version; null when none is kept. The copy is the
   * caller's to change.
   */
  get(id: string): { row: Row; text: string; version: string } | null {
    const kept = this.rows.get(id);
    if (!kept) return null;
    // Most recently used last: the oldest goes first when full.
    this.rows.delete(id);
    this.rows.set(id, kept);
    return { row: JSON.parse(kept.text) as Row, text: kept.text, version: kept.version };
  }

  /** Keeps `text` (a row's JSON, as Postgres wrote it, whose version is `version`) under `id`. */
  keep(id: string, text: string, version: string): void {
    this.forget(id);
    if (text.length > this.limits.rowBytes) return;
    this.rows.set(id, { text, version });
    this.bytes += text.length;
    for (const [oldest, v] of this.rows) {
      if (this.rows.size <= this.limits.rows && this.bytes <= this.limits.bytes) break;
      this.rows.delete(oldest);
      this.bytes -= v.text.length;
    }
  }

  forget(id: string): void {
    const kept = this.rows.get(id);
    if (!kept) return;
    this.rows.delete(id);
    this.bytes -= kept.text.length;
  }

  clear(): void {
    this.rows.clear();
    this.bytes = 0;
  }
}
