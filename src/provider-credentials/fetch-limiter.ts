/**
 * Bounds IdP metadata fetches in flight (each holds a socket and up to the fetch timeout, and its parse a
 * worker): per organization, so one tenant cannot take the region's share, and per region. An API request
 * beyond its organization's bound waits a few seconds for a slot (a burst of creates, or concurrent retries
 * of one Idempotency-Key, should not fail), then is refused with 429; beyond the region's bound it is refused
 * at once with 503; both with Retry-After. The refresher takes the same slots without waiting; when refused
 * it leaves the credential due.
 */
import type { Response } from 'express';
import type { Config } from '../config';
import { AppError } from '../http/errors';

export const DEFAULT_FETCHES_PER_ORG = 4;
/** How long an API request waits for one of its organization's slots. */
export const DEFAULT_ORG_SLOT_WAIT_MS = 5000;
export const DEFAULT_FETCHES_PER_REGION = 16;
const RETRY_AFTER_SECONDS = 5;

export class FetchLimiter {
  private inRegion = 0;
  private readonly inOrg = new Map<string, number>();
  /** Requests waiting for a slot of their organization, oldest first. */
  private readonly waiting = new Map<string, (() => void)[]>();
  readonly perOrg: number;
  readonly perRegion: number;
  /** How long an API request waits for one of its organization's slots. */
  readonly orgWaitMs: number;

  constructor(limits: Config['metadataFetchConcurrency'] = {}) {
    this.perOrg = limits?.perOrg ?? DEFAULT_FETCHES_PER_ORG;
    this.perRegion = limits?.perRegion ?? DEFAULT_FETCHES_PER_REGION;
    this.orgWaitMs = limits?.waitMs ?? DEFAULT_ORG_SLOT_WAIT_MS;
  }

  /**
   * Runs `fetch` in a slot, waiting up to `waitMs` for one of the organization's; `res`, when given, gets
   * the Retry-After of a refusal.
   */
  async run<T>(orgId: string, fetch: () => Promise<T>, res?: Response, waitMs = 0): Promise<T> {
    await this.acquire(orgId, Date.now() + waitMs, res);
    try {
      return await fetch();
    } finally {
      this.release(orgId);
    }
  }

  private async acquire(orgId: string, deadline: number, res?: Response): Promise<void> {
    for (;;) {
      const org = this.inOrg.get(orgId) ?? 0;
      if (org < this.perOrg && this.inRegion < this.perRegion) {
        this.inRegion += 1;
        this.inOrg.set(orgId, org + 1);
        return;
      }
      const left = deadline - Date.now();
      if (org < this.perOrg || left <= 0) {
        res?.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
        throw org < this.perOrg
          ? new AppError(503, 'metadata_fetches_busy', `This region is fetching as much IdP metadata as it may at once (${this.perRegion}); retry in ${RETRY_AFTER_SECONDS} seconds.`)
          : new AppError(
              429,
              'too_many_metadata_fetches',
              `This API key's organization already has ${org} IdP metadata fetches in progress, for itself or the sub-organizations the key acts on (the limit is ${this.perOrg}); retry in ${RETRY_AFTER_SECONDS} seconds.`,
            );
      }
      await new Promise<void>((resolve) => {
        const queue = this.waiting.get(orgId) ?? [];
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          const i = queue.indexOf(wake);
          if (i >= 0) queue.splice(i, 1);
          if (queue.length === 0) this.waiting.delete(orgId);
          resolve();
        }, left);
        queue.push(wake);
        this.waiting.set(orgId, queue);
      });
    }
  }

  private release(orgId: string): void {
    this.inRegion -= 1;
    const left = (this.inOrg.get(orgId) ?? 1) - 1;
    if (left > 0) this.inOrg.set(orgId, left);
    else this.inOrg.delete(orgId);
    const queue = this.waiting.get(orgId);
    const next = queue?.shift();
    if (queue && queue.length === 0) this.waiting.delete(orgId);
    next?.();
  }

  get inFlight(): number {
    return this.inRegion;
  }
}

const limiters = new WeakMap<object, FetchLimiter>();

/** One limiter per region's configuration object (routes and refresher of one region share it). */
export function fetchLimiterFor(config: object & Pick<Config, 'metadataFetchConcurrency'>): FetchLimiter {
  let l = limiters.get(config);
  if (!l) {
    l = new FetchLimiter(config.metadataFetchConcurrency);
    limiters.set(config, l);
  }
  return l;
}
