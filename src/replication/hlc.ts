/**
 * Hybrid logical clock. A version is "<wall ms, 15 digits>.<counter, 6 digits>.<region id>", so comparing
 * two versions as plain strings ("C" collation in Postgres) orders them by (wall, counter, region):
 * last writer wins, and the region id breaks exact ties deterministically.
 */
const WALL_DIGITS = 15;
const COUNTER_DIGITS = 6;
const MAX_COUNTER = 10 ** COUNTER_DIGITS - 1;

export interface Stamp {
  wall: number;
  counter: number;
  region: string;
}

export function formatVersion(s: Stamp): string {
  return `${String(s.wall).padStart(WALL_DIGITS, '0')}.${String(s.counter).padStart(COUNTER_DIGITS, '0')}.${s.region}`;
}

export function parseVersion(v: string): Stamp {
  const m = /^(\d{15})\.(\d{6})\.(.+)$/.exec(v);
  if (!m) throw new Error(`malformed version '${v}'`);
  return { wall: Number(m[1]), counter: Number(m[2]), region: m[3] };
}

/** A remote version too far ahead of this region's clock: refused, not observed. */
export class ClockSkewError extends Error {}

export const DEFAULT_MAX_CLOCK_SKEW_MS = 60_000;

export class HybridClock {
  private wall = 0;
  private counter = 0;

  /**
   * `maxSkewMs`: how far ahead of this region's physical clock a remote version may be. A region whose
   * clock runs far ahead would otherwise drag every region's clock along and win every conflict.
   */
  constructor(
    private readonly region: string,
    private readonly now: () => number = Date.now,
    readonly maxSkewMs: number = DEFAULT_MAX_CLOCK_SKEW_MS,
  ) {}

  /** A new version, later than every version this clock has issued or observed (including `after`). */
  next(after?: string | null): string {
    // A stored row's version was admitted when it arrived (or written here): always move past it, so a
    // local write outranks the row it replaces.
    if (after) this.advance(after);
    const physical = this.now();
    if (physical > this.wall) {
      this.wall = physical;
      this.counter = 0;
    } else if (this.counter < MAX_COUNTER) {
      this.counter += 1;
    } else {
      this.wall += 1;
      this.counter = 0;
    }
    return formatVersion({ wall: this.wall, counter: this.counter, region: this.region });
  }

  /** Whether a remote version is within maxSkewMs of this region's physical clock. */
  admits(version: string): boolean {
    return parseVersion(version).wall <= this.now() + this.maxSkewMs;
  }

  /** How far (ms) a version is ahead of this region's physical clock (negative when behind). */
  aheadBy(version: string): number {
    return parseVersion(version).wall - this.now();
  }

  /**
   * Moves the clock past a version seen from elsewhere, so the next local write orders after it. Refuses
   * (ClockSkewError) a version more than maxSkewMs ahead of the physical clock.
   */
  observe(version: string): void {
    if (!this.admits(version)) {
      throw new ClockSkewError(`version ${version} is ${this.aheadBy(version)} ms ahead of this region's clock (at most ${this.maxSkewMs} ms allowed)`);
    }
    this.advance(version);
  }

  private advance(version: string): void {
    const s = parseVersion(version);
    if (s.wall > this.wall || (s.wall === this.wall && s.counter > this.counter)) {
      this.wall = s.wall;
      this.counter = s.counter;
    }
  }
}
