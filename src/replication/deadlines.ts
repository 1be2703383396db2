/**
 * Many deadlines, one timer: a binary min-heap of entries by deadline and a single Node timer armed for
 * the earliest. The tracker holds one entry per all_regions waiter; with a timer each, 10,000 waiters held
 * 10,000 Timeout objects (and their closures) for nothing but a 408 most never reach. An entry answered
 * early is taken out in O(log n), so the heap holds only the entries still waiting. Deadlines are given as
 * wall-clock times (a request's start plus its timeout) and kept on the monotonic clock from then on, as a
 * timer of their own would: a step of the system clock (NTP, a VM resumed) moves no 408 earlier or later.
 */

/** What the heap stores: when the entry is due (performance.now() ms) and its place (-1 when not in it). */
export interface Timed {
  due: number;
  slot: number;
}

export class Deadlines<T extends Timed> {
  private readonly heap: T[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** When the armed timer fires (performance.now() ms); Infinity when none is armed. */
  private armedFor = Infinity;

  /** `expired` is called for each entry whose deadline has passed, after it left the heap. */
  constructor(private readonly expired: (entry: T) => void) {}

  get size(): number {
    return this.heap.length;
  }

  /** Whether its timer is armed (it is exactly while entries wait). */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** Adds an entry due at `deadline` (epoch ms). */
  add(entry: T, deadline: number): void {
    entry.due = performance.now() + (deadline - Date.now());
    entry.slot = this.heap.length;
    this.heap.push(entry);
    this.up(entry.slot);
    if (entry.due < this.armedFor) this.arm();
  }

  /** Takes the entry out (no-op when it is not in the heap). The timer stays: firing early finds nothing. */
  remove(entry: T): void {
    const i = entry.slot;
    if (i < 0 || this.heap[i] !== entry) return;
    entry.slot = -1;
    const last = this.heap.pop() as T;
    if (i < this.heap.length) {
      this.heap[i] = last;
      last.slot = i;
      this.down(i);
      this.up(last.slot);
    }
    if (this.heap.length === 0) this.disarm();
  }

  private arm(): void {
    this.disarm();
    const first = this.heap[0];
    if (!first) return;
    this.armedFor = first.due;
    this.timer = setTimeout(() => this.fire(), Math.max(0, Math.ceil(first.due - performance.now())));
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.armedFor = Infinity;
  }

  private fire(): void {
    this.timer = null;
    this.armedFor = Infinity;
    const now = performance.now();
    for (let first = this.heap[0]; first && first.due <= now; first = this.heap[0]) {
      this.remove(first);
      this.expired(first);
    }
    if (this.heap.length > 0 && this.timer === null) this.arm();
  }

  private up(i: number): void {
    const heap = this.heap;
    const entry = heap[i] as T;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p] as T;
      if (parent.due <= entry.due) break;
      heap[i] = parent;
      parent.slot = i;
      i = p;
    }
    heap[i] = entry;
    entry.slot = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const entry = heap[i] as T;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && (heap[c + 1] as T).due < (heap[c] as T).due) c++;
      const child = heap[c] as T;
      if (entry.due <= child.due) break;
      heap[i] = child;
      child.slot = i;
      i = c;
    }
    heap[i] = entry;
    entry.slot = i;
  }
}
