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

/**
 * Reads "<15 digits>.<6 digits>.<region>". Checked by hand, not with a regular expression: an applied row
 * is parsed three times, and each match's array was a few per cent of what an applying region allocated.
 */
export function parseVersion(v: string): Stamp {
  const region = v.slice(WALL_DIGITS + COUNTER_DIGITS + 2);
  if (
    v.length <= WALL_DIGITS + COUNTER_DIGITS + 2 ||
    !digits(v, 0, WALL_DIGITS) ||
    v.charCodeAt(WALL_DIGITS) !== DOT ||
    !digits(v, WALL_DIGITS + 1, WALL_DIGITS + 1 + COUNTER_DIGITS) ||
    v.charCodeAt(WALL_DIGITS + 1 + COUNTER_DIGITS) !== DOT ||
    LINE_BREAK.test(region)
  ) {
    throw new Error(`malformed version '${v}'`);
  }
  return { wall: Number(v.slice(0, WALL_DIGITS)), counter: Number(v.slice(WALL_DIGITS + 1, WALL_DIGITS + 1 + COUNTER_DIGITS)), region };
}

/** Whether `v` is a version parseVersion reads (a change carrying another is unreadable: dead-lettered). */
export function isVersion(v: unknown): v is string {
  if (typeof v !== 'string') return false;
  try {
    parseVersion(v);
    return true;
  } catch {
    return false;
  }
}

const DOT = 46;
/** What a regular expression's `.` does not match: a region id holds none of them. */
const LINE_BREAK = /[\n\r\u2028\u2029]/;

function digits(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
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

/** The wall-clock time of a version, ISO 8601 (for a message to a client); null when it does not read as one. */
export function versionTime(version: string): string | null {
  try {
    return new Date(parseVersion(version).wall).toISOString();
  } catch {
    return null;
  }
}
