/**
 * Bounds IdP metadata fetches in flight (each holds a socket and up to the fetch timeout, and its parse a
 * worker): per organization, so one tenant cannot take the region's share, and per region. A fetch beyond
 * either bound is refused at once (no queue): 429 for the organization's bound, 503 for the region's, both
 * with Retry-After. The refresher takes the same slots; when refused it leaves the credential due.
 */
import type { Response } from 'express';
import type { Config } from '../config';
import { AppError } from '../http/errors';

export const DEFAULT_FETCHES_PER_ORG = 2;
export const DEFAULT_FETCHES_PER_REGION = 16;
const RETRY_AFTER_SECONDS = 5;

export class FetchLimiter {
  private inRegion = 0;
  private readonly inOrg = new Map<string, number>();
  readonly perOrg: number;
  readonly perRegion: number;

  constructor(limits: Config['metadataFetchConcurrency'] = {}) {
    this.perOrg = limits?.perOrg ?? DEFAULT_FETCHES_PER_ORG;
    this.perRegion = limits?.perRegion ?? DEFAULT_FETCHES_PER_REGION;
  }

  /** Runs `fetch` in a slot; `res`, when given, gets the Retry-After of a refusal. */
  async run<T>(orgId: string, fetch: () => Promise<T>, res?: Response): Promise<T> {
    const org = this.inOrg.get(orgId) ?? 0;
    let refusal: AppError | null = null;
    if (org >= this.perOrg) {
      refusal = new AppError(
        429,
        'too_many_metadata_fetches',
        `This organization already has ${org} IdP metadata fetches in progress (the limit is ${this.perOrg}); retry in ${RETRY_AFTER_SECONDS} seconds.`,
      );
    } else if (this.inRegion >= this.perRegion) {
      refusal = new AppError(503, 'metadata_fetches_busy', `This region is fetching as much IdP metadata as it may at once (${this.perRegion}); retry in ${RETRY_AFTER_SECONDS} seconds.`);
    }
    if (refusal) {
      res?.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
      throw refusal;
    }
    this.inRegion += 1;
    this.inOrg.set(orgId, org + 1);
    try {
      return await fetch();
    } finally {
      this.inRegion -= 1;
      const left = (this.inOrg.get(orgId) ?? 1) - 1;
      if (left > 0) this.inOrg.set(orgId, left);
      else this.inOrg.delete(orgId);
    }
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
