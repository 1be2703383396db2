/**
 * The host-name lookups of metadata fetches, bounded per process. dns.lookup is getaddrinfo on libuv's thread
 * pool, and a lookup cannot be cancelled: when a fetch's time runs out it gives up, but its lookup keeps its
 * thread until the system resolver gives up too (glibc: 5 s per try and server, or longer). libuv runs
 * getaddrinfo on at most half the pool's threads (2 of the default 4); every further lookup of the process —
 * other tenants' IdPs, the database's and Redis' host names on a reconnect — waits behind the ones running.
 * Any organization chooses the host names fetched, so host names whose DNS never answers could hold those
 * threads indefinitely, one fetch after another.
 *
 * So at most `lanes` lookups run at once (lookupLanes: one thread of libuv's lookup share is always left for
 * the rest of the process, and the pool's other half for fs, crypto and zlib). A lookup that has not answered
 * within `stallMs` is "not answering". A fetch that needs a lookup while every lane is held by ones not
 * answering is refused at once (LookupsBusyError), rather than queued behind them; while some lane-holder is
 * still young it waits for a lane (healthy lookups take milliseconds), within its own deadline. That refusal
 * is the region's state, not the fetched URL's fault (the lanes are held by other hosts' lookups): callers
 * answer it as "busy, retry later", never as a refusal of the URL. A lookup of a name already being looked up
 * shares that lookup (a refresh of many credentials of one IdP holds one thread), unless it is not answering:
 * then the fetch is refused at once, naming the host (dns_not_answering: that host's own fault).
 *
 * The lanes are shared fairly between organizations, since any organization chooses the host names fetched: the
 * lookups started for one organization hold at most `orgLanes` of them (organizationLanes: half, at least one),
 * so one organization whose host names never answer cannot take every lane, and the others' lookups still get
 * the rest. A fetch of an organization already holding its share with lookups that are not answering is
 * refused at once as busy for that organization (LookupsBusyError, naming those hosts: they are its own), not
 * as dns_not_answering (its new host was never asked). A lookup counts against the organization whose fetch
 * started it only: another organization's fetch of the same name shares it without it counting against that
 * one, so no organization's hung name can use up another's share. Lookups for no organization (tools, tests)
 * are bounded by the lanes alone; the database's and Redis' names do not come here at all, and keep the thread
 * of libuv's lookup share that lookupLanes leaves out.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { MetadataError } from './errors';
import type { ResolveHost } from './fetch-metadata';
import { LIBUV_DEFAULT_THREADPOOL_SIZE, threadPoolSize } from '../threadpool-size';

/** How long a lookup may go unanswered before it counts as not answering (DNS answers in well under a second). */
export const STALL_MS = 2000;
/**
 * When to try again after LookupsBusyError: by then the lookups holding the lanes have ended, unless new ones
 * came (glibc gives up on a name after 5 s per try and server: 30 s with two tries and three servers).
 */
export const LOOKUPS_BUSY_RETRY_SECONDS = 30;

/**
 * Every lane is held by lookups of other host names that are not answering: the fetch was not tried. Nothing
 * is wrong with its URL; it may work in `retryAfterSeconds`. Not a MetadataError (those refuse the URL or the
 * document). The message names only the caller's own host.
 */
export class LookupsBusyError extends Error {
  override readonly name = 'LookupsBusyError';
  readonly retryAfterSeconds = LOOKUPS_BUSY_RETRY_SECONDS;

  /**
   * `scope`: 'region' when every lane is held (by lookups of several organizations, or of none), 'organization'
   * when the caller's organization holds its own share: only its fetches are refused, other organizations' go on.
   */
  constructor(message: string, readonly scope: 'region' | 'organization') {
    super(message);
  }
}

/**
 * The lanes for this process: libuv's share of the pool for lookups, (size + 1) / 2 threads, less one. A region
 * process sets UV_THREADPOOL_SIZE to 16 unless it is set (threadpool.ts): 8 threads for lookups, 7 lanes.
 * libuv's own default, 4 threads (a process that did not load threadpool.ts, jest's), gives 1.
 */
export function lookupLanes(env: NodeJS.ProcessEnv = process.env): number {
  // A value out of bounds stops a region process at start (config.ts); anywhere else it counts as unset.
  const pool = threadPoolSize(env.UV_THREADPOOL_SIZE) ?? LIBUV_DEFAULT_THREADPOOL_SIZE;
  return Math.max(1, Math.floor((pool + 1) / 2) - 1);
}

/**
 * The lanes one organization's lookups may hold: half, rounded down, at least one (3 of a region process's 7).
 * Half rather than all but one or two: one organization's hung names leave the other half or more to everyone
 * else, and it takes three organizations' at once, not two, to hold all 7. Healthy lookups answer in
 * milliseconds and are shared by name, so an organization's own fetches (4 at once per organization by default,
 * metadataFetchConcurrency) seldom need more than one or two lanes at once; what fills a share is lookups left
 * behind by fetches that gave up. With one lane (libuv's default pool) there is nothing to share: it is that one.
 */
export function organizationLanes(lanes: number): number {
  return Math.max(1, Math.floor(lanes / 2));
}

interface Running {
  hostname: string;
  promise: Promise<LookupAddress[]>;
  startedAt: number;
  answering: boolean;
  /** The organization whose fetch started it, the only one it counts against; null: for none. */
  organization: string | null;
}

export interface LookupGateOptions {
  lanes?: number;
  /** Lanes one organization's lookups may hold; default organizationLanes(lanes). */
  orgLanes?: number;
  stallMs?: number;
}

export class LookupGate {
  private readonly running = new Map<string, Running>();
  /** Fetches waiting for a lane, woken when a lookup ends or stops answering. */
  private readonly waiting = new Set<() => void>();
  readonly lanes: number;
  readonly orgLanes: number;
  readonly stallMs: number;

  constructor(private readonly resolve: ResolveHost, opts: LookupGateOptions = {}) {
    this.lanes = opts.lanes ?? lookupLanes();
    this.orgLanes = Math.min(this.lanes, opts.orgLanes ?? organizationLanes(this.lanes));
    this.stallMs = opts.stallMs ?? STALL_MS;
  }

  /** Lookups running now (fetches that gave up included), and how many of them are not answering. */
  get stats(): { running: number; notAnswering: number } {
    let notAnswering = 0;
    for (const r of this.running.values()) if (!r.answering) notAnswering += 1;
    return { running: this.running.size, notAnswering };
  }

  /**
   * `organization`: the one the fetch is for (null: none), whose share of the lanes a lookup started here takes.
   * `signal`: the fetch gave up; a wait for a lane ends and no lookup is started for it.
   */
  async lookup(hostname: string, organization: string | null, signal?: AbortSignal): Promise<LookupAddress[]> {
    const key = hostname.toLowerCase();
    for (;;) {
      const same = this.running.get(key);
      if (same) {
        if (!same.answering) throw hostNotAnswering(hostname, Date.now() - same.startedAt);
        return same.promise;
      }
      const own = organization === null ? [] : [...this.running.values()].filter((r) => r.organization === organization);
      if (own.length >= this.orgLanes) {
        // Only its own lookups stand in its way: refused if none of them will answer soon, else wait as below.
        if (own.every((r) => !r.answering)) throw this.shareHeld(hostname, own);
      } else if (this.running.size < this.lanes) {
        return this.start(key, hostname, organization);
      } else if (this.stats.notAnswering >= this.running.size) {
        throw this.lanesHeld(hostname);
      }
      await this.change(signal);
    }
  }

  private start(key: string, hostname: string, organization: string | null): Promise<LookupAddress[]> {
    const promise = Promise.resolve().then(() => this.resolve(hostname));
    const entry: Running = { hostname, promise, startedAt: Date.now(), answering: true, organization };
    const timer = setTimeout(() => {
      entry.answering = false;
      this.wake();
    }, this.stallMs);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      if (this.running.get(key) === entry) this.running.delete(key);
      this.wake();
    };
    void promise.then(done, done);
    this.running.set(key, entry);
    return promise;
  }

  private change(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiting.delete(wake);
        reject(new Error('the fetch gave up waiting for a lookup'));
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal?.aborted) {
        reject(new Error('the fetch gave up waiting for a lookup'));
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.add(wake);
    });
  }

  private wake(): void {
    const all = [...this.waiting];
    this.waiting.clear();
    for (const wake of all) wake();
  }

  /** Which other hosts hold the lanes is not the caller's to learn (they are other organizations' IdPs). */
  private lanesHeld(hostname: string): LookupsBusyError {
    const n = this.running.size;
    return new LookupsBusyError(
      `Could not look up the host "${hostname}" now: ${n === 1 ? 'a lookup of another IdP host has' : `${n} lookups of other IdP hosts have`} had no ` +
        `answer for over ${seconds(this.stallMs)}, and this region runs at most ${this.lanes} at once so that they cannot hold ` +
        `the threads the rest of the service needs. Nothing is wrong with this request; retry in ${LOOKUPS_BUSY_RETRY_SECONDS} seconds.`,
      'region',
    );
  }

  /**
   * The hosts are named: the organization's own fetches asked for them (its URLs, or where they redirected). Said
   * of the API key's organization: an API request's lookups count against it (provider-credentials/routes.ts), which
   * may be a parent of the one the request acts on, and the hosts those of its other sub-organizations.
   */
  private shareHeld(hostname: string, own: readonly Running[]): LookupsBusyError {
    const hosts = own.map((r) => `"${r.hostname}"`).join(', ');
    return new LookupsBusyError(
      `Could not look up the host "${hostname}" now: ${own.length === 1 ? `a lookup of another IdP host of this API key's organization, ${hosts}, has` : `${own.length} lookups of other IdP hosts of this API key's organization (${hosts}) have`} ` +
        `had no answer for over ${seconds(this.stallMs)}, and this region runs at most ${this.orgLanes} at once for one organization so that ` +
        `they cannot hold the lookups of the others. Check the DNS of ${own.length === 1 ? 'that host' : 'those hosts'}; retry in ${LOOKUPS_BUSY_RETRY_SECONDS} seconds.`,
      'organization',
    );
  }
}

function hostNotAnswering(hostname: string, ms: number): MetadataError {
  return new MetadataError(
    'dns_not_answering',
    `The DNS of "${hostname}" is not answering: a lookup of it started ${seconds(ms)} ago has no answer yet. ` +
      'Check the host name and that its DNS servers answer, then retry.',
  );
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.floor(ms / 1000)} s`;
}

const systemResolve: ResolveHost = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

let shared: LookupGate | null = null;

/** The process's gate over the system resolver, created on first use. */
export function sharedLookupGate(): LookupGate {
  return (shared ??= new LookupGate(systemResolve));
}

/** Puts `gate` in the shared one's place (tests: a resolver without real DNS); returns the one it replaced. */
export function replaceSharedLookupGate(gate: LookupGate | null): LookupGate | null {
  const before = shared;
  shared = gate;
  return before;
}
