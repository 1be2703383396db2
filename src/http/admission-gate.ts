/**
 * The gates of admission control (admission.ts): a counting semaphore with a bounded FIFO queue and a bounded
 * wait per kind of request, and the slots the gates share. Apart from the HTTP side (middleware, the slot a
 * request holds, the 503 and its summary) because they know nothing of requests: the slot-budget tests drive
 * them directly, and their queue (held by a head index, compacted now and then) is easier to read alone.
 */
export interface GateLimits {
  /** Requests in their database phase at once. */
  concurrency: number;
  /** Requests waiting for a slot; one more is refused at once. */
  queue: number;
  /** Longest wait for a slot; a request still queued then is refused. */
  queueWaitMs: number;
}

/** The slots both gates draw from (AdmissionLimits.databaseSlots); a freed slot wakes the gates in turn. */
export class SlotBudget {
  used = 0;
  private readonly gates: Gate[] = [];
  private turn = 0;

  constructor(readonly slots: number) {}

  get free(): boolean {
    return this.used < this.slots;
  }

  join(gate: Gate): void {
    this.gates.push(gate);
  }

  /** A slot came back: the gates take turns to admit their next queued request, so neither starves. */
  released(): void {
    for (let i = 0; i < this.gates.length && this.free; i++) this.gates[(this.turn + i) % this.gates.length]?.pump();
    this.turn = (this.turn + 1) % Math.max(1, this.gates.length);
  }
}

export type RefusalReason = 'queue_full' | 'queue_timeout';

interface Queued {
  grant: (release: () => void) => void;
  timer: NodeJS.Timeout;
  done: boolean;
}

/** A counting semaphore with a bounded FIFO queue and a bounded wait. */
export class Gate {
  private active = 0;
  private readonly waiting: Queued[] = [];
  private head = 0;
  private queuedCount = 0;
  admitted = 0;
  readonly refused: Record<RefusalReason, number> = { queue_full: 0, queue_timeout: 0 };
  peakQueued = 0;

  constructor(
    readonly name: 'writes' | 'reads',
    readonly limits: GateLimits,
    private readonly budget: SlotBudget = new SlotBudget(limits.concurrency),
  ) {
    budget.join(this);
  }

  private get canGrant(): boolean {
    return this.active < this.limits.concurrency && this.budget.free;
  }

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.queuedCount;
  }

  /** The slot's release function when one is free and nobody queues for it; null otherwise (then acquire()). */
  tryGrant(): (() => void) | null {
    return this.canGrant && this.queuedCount === 0 ? this.grant() : null;
  }

  /**
   * Resolves with the slot's release function (idempotent), or rejects with the refusal reason. `cancel`
   * registers what to do when the caller gives up first (the client went away): leave the queue.
   */
  acquire(onCancel?: (cancel: () => void) => void): Promise<() => void> {
    const now = this.tryGrant();
    if (now) return Promise.resolve(now);
    if (this.queuedCount >= this.limits.queue) {
      this.refused.queue_full++;
      return Promise.reject(new Refused('queue_full'));
    }
    return new Promise((resolve, reject) => {
      const entry: Queued = {
        grant: resolve,
        done: false,
        timer: setTimeout(() => {
          this.drop(entry);
          this.refused.queue_timeout++;
          reject(new Refused('queue_timeout'));
        }, this.limits.queueWaitMs),
      };
      this.waiting.push(entry);
      this.queuedCount++;
      this.peakQueued = Math.max(this.peakQueued, this.queuedCount);
      onCancel?.(() => this.drop(entry));
    });
  }

  /** Whether a request arriving now would be refused at once (no slot, and the queue is at its bound). */
  get full(): boolean {
    return !(this.canGrant && this.queuedCount === 0) && this.queuedCount >= this.limits.queue;
  }

  /** Counts a refusal made without calling acquire() (see Admission.refuseAtOnce). */
  countRefusal(): void {
    this.refused.queue_full++;
  }

  status() {
    return {
      in_flight: this.active,
      queued: this.queuedCount,
      peak_queued: this.peakQueued,
      admitted: this.admitted,
      refused: { ...this.refused },
      limits: { concurrency: this.limits.concurrency, queue: this.limits.queue, queue_wait_ms: this.limits.queueWaitMs },
    };
  }

  private grant(): () => void {
    this.active++;
    this.budget.used++;
    this.admitted++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.budget.used--;
      this.budget.released();
    };
  }

  private drop(entry: Queued): void {
    if (entry.done) return;
    entry.done = true;
    clearTimeout(entry.timer);
    this.queuedCount--;
  }

  /** Admits queued requests while this gate and the budget have room. */
  pump(): void {
    while (this.canGrant && this.head < this.waiting.length) {
      const entry = this.waiting[this.head++] as Queued;
      if (entry.done) continue;
      this.drop(entry);
      entry.grant(this.grant());
    }
    // Compact the array now and then instead of shifting it on every grant.
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
  }
}

/** Why a gate turned a request away (acquire() rejects with it). */
export class Refused extends Error {
  constructor(readonly reason: RefusalReason) {
    super(reason);
  }
}
