/**
 * A process's connections to the deployment's Redis servers: its own region's Redis (its inbox, the acks
 * of the changes it originated, membership) and every other region's (the relay delivers changes into
 * their inboxes; the applier sends acks back to each change's origin). Regions that share a Redis share a
 * connection, so one Redis for every region (the development default) costs no extra connections.
 * A region's Redis is the `redisUrl` of its config entry, else the address it recorded in the membership
 * record (a region added to a running deployment; recorded without credentials, reached with those of the
 * default `redisUrl`), else the deployment's default `redisUrl`.
 */
import { createRedis, type Redis } from '../redis';
import { withTimeout } from '../db/timeout';

/** How long a command to another region's Redis may go unanswered (a partition answers nothing). */
export const PEER_COMMAND_TIMEOUT_MS = 2000;

export interface RedisLinksOptions {
  region: string;
  own: Redis;
  /** Per configured region, its Redis URL (config entry, else the default). */
  configured: ReadonlyMap<string, string>;
  defaultUrl: string;
  /** Connection name prefix (CLIENT LIST shows it). */
  name: string;
}

export class RedisLinks {
  private readonly byUrl = new Map<string, Redis>();
  private readonly learned = new Map<string, string>();

  constructor(private readonly o: RedisLinksOptions) {
    this.byUrl.set(this.urlOf(o.region), o.own);
    // Connected ahead of use: these connections refuse commands while not connected (never queue them).
    for (const r of o.configured.keys()) this.to(r);
  }

  /** Waits (up to `timeoutMs`) until the connection to `region`'s Redis is ready; never rejects. */
  async ready(region: string, timeoutMs = PEER_COMMAND_TIMEOUT_MS): Promise<void> {
    const c = this.to(region);
    if (c.status === 'ready') return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        c.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      c.once('ready', done);
    });
  }

  get own(): Redis {
    return this.o.own;
  }

  urlOf(region: string): string {
    return this.o.configured.get(region) ?? this.learned.get(region) ?? this.o.defaultUrl;
  }

  /** Notes the Redis a member not in this process's config recorded for itself. */
  learn(region: string, url: string | null): void {
    if (url && !this.o.configured.has(region)) this.learned.set(region, withCredentialsOf(url, this.o.defaultUrl));
  }

  /** Whether `region` uses this process's own Redis. */
  sharesOwn(region: string): boolean {
    return this.to(region) === this.o.own;
  }

  /** The command connection to `region`'s Redis (opened on first use; fails fast while it is down). */
  to(region: string): Redis {
    const url = this.urlOf(region);
    let c = this.byUrl.get(url);
    if (!c) {
      c = createRedis(url, `${this.o.name}:to:${region}`, { commandTimeoutMs: PEER_COMMAND_TIMEOUT_MS });
      this.byUrl.set(url, c);
    }
    return c;
  }

  /** Closes the connections to other regions' Redis (the owner closes its own). */
  disconnect(): void {
    for (const c of this.byUrl.values()) if (c !== this.o.own) c.disconnect();
  }
}

/** What an operation on one region's Redis gave. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error };

/** Runs `fn` for each region at once; a region whose Redis fails does not hold back the others. */
/** How long a status read waits for a Redis: one that hangs (stopped, its connection open) fails the read. */
export const REDIS_STATUS_MS = 2000;
export const redisWithin = <T>(p: Promise<T>): Promise<T> => withTimeout(p, REDIS_STATUS_MS, `Redis did not answer within ${REDIS_STATUS_MS} ms`);

export async function eachRegion<T>(regions: readonly string[], fn: (region: string) => Promise<T>): Promise<Map<string, Outcome<T>>> {
  const out = new Map<string, Outcome<T>>();
  await Promise.all(regions.map(async (r) => {
    try {
      out.set(r, { ok: true, value: await fn(r) });
    } catch (err) {
      out.set(r, { ok: false, error: err as Error });
    }
  }));
  return out;
}

/**
 * The query parameters ioredis takes for a user or password (`redis://host:6379?password=…`: it reads the query
 * as connection options), which a URL without credentials drops too.
 */
const CREDENTIAL_PARAM = /password|username/i;

function credentialParams(u: URL): [string, string][] {
  return [...u.searchParams].filter(([key]) => CREDENTIAL_PARAM.test(key));
}

/** A Redis URL without user and password: what a region records about itself in the shared membership record. */
export function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    for (const [key] of credentialParams(u)) u.searchParams.delete(key);
    return u.toString();
  } catch {
    return url;
  }
}

/** `url` reached with the credentials of `from` when it has none of its own (a membership record's address). */
export function withCredentialsOf(url: string, from: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password || credentialParams(u).length) return url;
    const f = new URL(from);
    u.username = f.username;
    u.password = f.password;
    for (const [key, value] of credentialParams(f)) u.searchParams.append(key, value);
    return u.toString();
  } catch {
    return url;
  }
}
