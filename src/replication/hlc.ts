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

export class HybridClock {
  private wall = 0;
  private counter = 0;

  constructor(
    private readonly region: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** A new version, later than every version this clock has issued or observed (including `after`). */
  next(after?: string | null): string {
    if (after) this.observe(after);
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

  /** Moves the clock past a version seen from elsewhere, so the next local write orders after it. */
  observe(version: string): void {
    const s = parseVersion(version);
    if (s.wall > this.wall || (s.wall === this.wall && s.counter > this.counter)) {
      this.wall = s.wall;
      this.counter = s.counter;
    }
  }
}
