/**
 * API-key checks from memory. Every request authenticates with its API key, and the key rows change
 * rarely, so each process keeps the rows it looked up. It keeps them only while it listens to its
 * database's `auth_changed` channel (a trigger on api_keys and organizations notifies it when a change
 * commits, whichever way it arrived: a local write, a change replicated from another region, a re-seed),
 * and drops all of them on every notification and whenever the LISTEN connection is down. The
 * notification reaches the listener a moment after the commit, later than the writer's answer at times (a
 * CI run saw a key rotated in this process still work on the next request): so a process also drops them
 * itself when a key or organization change it made or applied commits (dropCachedKeys, the tables'
 * onCommitted), before it answers or acks. A rotated or revoked key therefore stops working in the process
 * that rotated it, and in each region's applying process, before the rotation's writer is answered (with
 * all_regions, in every region); another process of a region, on the notification. Should
 * notifications stop arriving while the connection still answers (a pooler between the region and its
 * database that does not relay them, say), an entry is also dropped once it is MAX_AGE_MS old: that bounds
 * how long a revoked key can go on working then.
 * A lookup that raced a change (it read the database before the change committed, and finishes after the
 * notification) is answered but not kept: the generation it started under is gone.
 */
import type { Db } from '../db/client';
import { listen, type ChannelListener } from '../db/notify';
import type { Logger } from '../logger';

export const AUTH_CHANNEL = 'auth_changed';

export interface LiveKey {
  orgId: string;
  keyHash: string;
}

/** How long a looked-up key is kept at most (ms). */
export const MAX_AGE_MS = 60_000;

export class ApiKeyCache {
  /** Per key id: the key and when it was looked up (performance.now()). */
  private readonly entries = new Map<string, { key: LiveKey; at: number }>();
  private generation = 0;
  private listening = false;
  hits = 0;
  misses = 0;

  /** At most `maxEntries` keys are kept; beyond that the cache starts over (keys are few; ids are guessable by no one). */
  constructor(
    private readonly maxEntries = 10_000,
    private readonly maxAgeMs = MAX_AGE_MS,
  ) {}

  /** Whether looked-up keys are kept (only while notifications are received). */
  get active(): boolean {
    return this.listening;
  }

  setListening(listening: boolean): void {
    this.listening = listening;
    this.invalidate();
  }

  /** A notification of a committed change (or the listener's state changed): drops every key held. */
  invalidate(): void {
    this.clear();
  }

  /** A change this process committed (see dropCachedKeys): the same, without waiting for its notification. */
  committedHere(): void {
    this.clear();
  }

  private clear(): void {
    this.generation++;
    this.entries.clear();
  }

  /** The live key with this id: from memory, or from `load` (kept when nothing changed meanwhile). */
  async find(keyId: string, load: (keyId: string) => Promise<LiveKey | null>): Promise<LiveKey | null> {
    const cached = this.listening ? this.entries.get(keyId) : undefined;
    if (cached && performance.now() - cached.at <= this.maxAgeMs) {
      this.hits++;
      return cached.key;
    }
    this.misses++;
    const generation = this.generation;
    // Aged from before the lookup: what it read may be older than its answer.
    const started = performance.now();
    const row = await load(keyId);
    // Unknown keys are not kept: anyone can send those.
    if (row && this.listening && generation === this.generation) {
      if (this.entries.size >= this.maxEntries) this.entries.clear();
      this.entries.set(keyId, { key: row, at: started });
    }
    return row;
  }
}

/** The cache of each database client whose region listens for key changes (see startApiKeyCache). */
const caches = new WeakMap<Db, ApiKeyCache>();

/** Drops the keys held for `db`'s region: a change of keys or organizations committed there by this process (the tables' onCommitted). */
export function dropCachedKeys(db: Db): void {
  caches.get(db)?.committedHere();
}

export function apiKeyCacheOf(db: Db): ApiKeyCache | null {
  return caches.get(db) ?? null;
}

/** Starts caching the keys read through `db`, invalidated by `databaseUrl`'s notifications; returns the stop. */
export function startApiKeyCache(db: Db, databaseUrl: string, log: Logger): { cache: ApiKeyCache; stop(): Promise<void> } {
  const cache = new ApiKeyCache();
  const listener: ChannelListener = listen({
    databaseUrl,
    channel: AUTH_CHANNEL,
    log,
    onNotify: () => cache.invalidate(),
    onState: (up) => cache.setListening(up),
  });
  caches.set(db, cache);
  return {
    cache,
    async stop() {
      if (caches.get(db) === cache) caches.delete(db);
      await listener.stop();
    },
  };
}
