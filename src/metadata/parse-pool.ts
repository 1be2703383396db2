/**
 * Parses IdP metadata in a small pool of worker threads, so no document, however built, stalls the region's
 * event loop: the loop only hands the text over and gets the result back. A parse that runs past its time
 * limit has its worker terminated (and replaced) and is refused. The XML limits (xml-limits.ts) still bound
 * the work in the worker.
 *
 * The worker runs compiled JavaScript: dist/src/metadata/parse-worker.js next to this file, or, when this
 * file runs as TypeScript (jest), the build's copy. Without a build, documents are parsed on the calling
 * thread (tests of the parser itself need no build).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { PROJECT_ROOT } from '../paths';
import { MetadataError, type MetadataErrorCode } from './errors';
import { parseIdpMetadata, type ParsedMetadata } from './parse-metadata';
import type { ParseJob, ParseReply } from './parse-worker';

export interface ParsePoolOptions {
  size?: number;
  /** Longest a parse may take before its worker is terminated; default 8000. */
  timeoutMs?: number;
  /** The compiled worker script; default: found as described above. */
  script?: string | null;
}

interface Pending {
  job: ParseJob;
  resolve(m: ParsedMetadata): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  current: (Pending & { timer: NodeJS.Timeout }) | null;
}

export function defaultWorkerScript(): string | null {
  const candidates = [path.join(__dirname, 'parse-worker.js'), path.join(PROJECT_ROOT, 'dist', 'src', 'metadata', 'parse-worker.js')];
  return candidates.find((p) => fs.existsSync(p)) ?? null;
}

export class ParsePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private readonly size: number;
  private readonly timeoutMs: number;
  private readonly script: string | null;
  /** Documents parsed in a worker, on this thread, and abandoned for taking too long. */
  readonly stats = { inWorker: 0, inline: 0, timedOut: 0 };

  constructor(opts: ParsePoolOptions = {}) {
    this.size = opts.size ?? Math.max(1, Math.min(2, os.cpus().length));
    this.timeoutMs = opts.timeoutMs ?? 8000;
    this.script = opts.script === undefined ? defaultWorkerScript() : opts.script;
  }

  /** `now`, `skewMs`: as parseIdpMetadata takes them. */
  parse(xml: string, now: Date, skewMs = 0): Promise<ParsedMetadata> {
    if (this.script === null) {
      this.stats.inline += 1;
      return Promise.resolve().then(() => parseIdpMetadata(xml, { now, skewMs }));
    }
    return new Promise<ParsedMetadata>((resolve, reject) => {
      this.queue.push({ job: { id: this.nextId++, xml, now: now.getTime(), skewMs }, resolve, reject });
      this.dispatch();
    });
  }

  /** Terminates the workers; queued parses are refused. */
  async close(): Promise<void> {
    for (const p of this.queue.splice(0)) p.reject(new Error('metadata parse pool closed'));
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.current === null);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) return;
      const next = this.queue.shift();
      if (!next) return;
      const timer = setTimeout(() => this.abandon(slot), this.timeoutMs);
      slot.current = { ...next, timer };
      // Busy, the worker keeps the process alive until it answers; idle, it does not.
      slot.worker.ref();
      slot.worker.postMessage(next.job);
    }
  }

  private spawn(): Slot {
    // A worker only parses; a document that makes it allocate without bound ends it, not the region.
    const worker = new Worker(this.script ?? '', { resourceLimits: { maxOldGenerationSizeMb: 256 } });
    const slot: Slot = { worker, current: null };
    worker.on('message', (reply: ParseReply) => this.finish(slot, reply));
    worker.on('error', (err) => this.fail(slot, err));
    worker.on('exit', () => this.fail(slot, new Error('metadata parse worker exited')));
    // After the listeners, which would otherwise ref it again: an idle pool must not keep the process alive.
    worker.unref();
    this.slots.push(slot);
    return slot;
  }

  private finish(slot: Slot, reply: ParseReply): void {
    const p = slot.current;
    if (!p || p.job.id !== reply.id) return;
    clearTimeout(p.timer);
    slot.current = null;
    slot.worker.unref();
    this.stats.inWorker += 1;
    if (reply.ok) p.resolve(reply.metadata);
    else if (reply.code !== null) p.reject(new MetadataError(reply.code as MetadataErrorCode, reply.message));
    else p.reject(new MetadataError('not_metadata', `The document could not be processed as SAML metadata (${reply.message}).`));
    this.dispatch();
  }

  /** The worker died (crash, memory limit) or was terminated: refuse its parse and replace it. */
  private fail(slot: Slot, err: Error): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    const p = slot.current;
    slot.current = null;
    if (p) {
      clearTimeout(p.timer);
      p.reject(new MetadataError('too_large', `The document could not be processed within the parser's limits (${err.message}).`));
    }
    this.dispatch();
  }

  private abandon(slot: Slot): void {
    this.stats.timedOut += 1;
    this.fail(slot, new Error(`parsing took longer than ${this.timeoutMs} ms`));
    void slot.worker.terminate();
  }
}

let shared: ParsePool | null = null;

/** The process's pool, created on first use (its workers do not keep the process alive). */
export function sharedParsePool(): ParsePool {
  return (shared ??= new ParsePool());
}
