/**
 * The harness scripts' HTTP side: one keep-alive connection pool per region, JSON in and out, and the few
 * API calls the scripts make (create an org, read a region's table digests).
 */
import { Pool } from 'undici';

export const CREDENTIALS_PATH = '/organizations/sso/saml/provider-credentials';

/** A response body as JSON when it is JSON, as text otherwise, null when empty. */
export function parseBody(text: string): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export interface Reply {
  status: number;
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}

export class RegionClient {
  private readonly pool: Pool;

  constructor(
    readonly region: string,
    readonly url: string,
    connections: number,
    timeoutMs = 15_000,
  ) {
    this.pool = new Pool(url, { connections, keepAliveTimeout: 4000, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: timeoutMs });
  }

  /** Rejects on a connection error or timeout (the caller cannot know whether the server acted). */
  async call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, opts: { headers?: Record<string, string>; body?: unknown } = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const res = await this.pool.request({ method, path, headers, body });
    return { status: res.statusCode, body: parseBody(await res.body.text()), headers: res.headers };
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}

export interface Org {
  id: string;
  api_key: string;
}

export function adminHeaders(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, ...extra };
}

export function orgHeaders(org: Org, extra: Record<string, string> = {}): Record<string, string> {
  return { 'SlashID-OrgID': org.id, 'SlashID-API-Key': org.api_key, ...extra };
}

/** Creates an organization with all_regions, so every region knows its API key before any load starts. */
export async function createOrg(c: RegionClient, adminToken: string, name: string): Promise<Org> {
  const res = await c.call('POST', '/admin/organizations', {
    body: { name },
    headers: adminHeaders(adminToken, { 'SlashID-Required-Consistency': 'all_regions' }),
  });
  const b = res.body as Partial<Org> | null;
  if (res.status !== 201 || typeof b?.id !== 'string' || typeof b.api_key !== 'string') {
    throw new Error(`creating the organization in ${c.region}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return { id: b.id, api_key: b.api_key };
}

export type Digest = Record<string, { rows: number; digest: string }>;

export async function digest(c: RegionClient, adminToken: string): Promise<Digest> {
  const res = await c.call('GET', '/admin/replication/digest', { headers: adminHeaders(adminToken) });
  const b = res.body as { tables?: Digest } | null;
  if (res.status !== 200 || !b?.tables) throw new Error(`digest of ${c.region}: ${res.status} ${JSON.stringify(res.body)}`);
  return b.tables;
}

/**
 * A region's `ack_signatures` of GET /admin/replication: acks and announcements it read that did not verify,
 * and membership entries that did not or were replayed, since it started.
 */
export interface AckFigures {
  mode: string;
  unverified: Record<string, number>;
  confirmed_on_unverified: number;
  member_entries: { unverified: Record<string, number> };
}

export async function ackFigures(c: RegionClient, adminToken: string): Promise<AckFigures> {
  const res = await c.call('GET', '/admin/replication', { headers: adminHeaders(adminToken) });
  const b = res.body as { ack_signatures?: AckFigures } | null;
  if (res.status !== 200 || !b?.ack_signatures) throw new Error(`ack figures of ${c.region}: ${res.status} ${JSON.stringify(res.body)}`);
  return b.ack_signatures;
}

/** A 503 of a region whose database is down or restarting (with Retry-After): the fault schedule's, not a failure. */
export const isDatabaseUnavailable = (res: Reply): boolean =>
  res.status === 503 && !!res.headers['retry-after'] && /region's database|its connection to its database/.test(JSON.stringify(res.body));

/**
 * The credential a SlashID write answer names: the `result`'s id (201), else the id at the end of its
 * `Location` (a 408 of a create that committed; SlashID's errors carry no `result`).
 */
export function writtenId(reply: { body: unknown; headers?: Record<string, string | string[] | undefined> }): string | null {
  const fromResult = resultId(reply.body);
  if (fromResult) return fromResult;
  const location = reply.headers?.location;
  const id = typeof location === 'string' ? location.split('/').pop() : undefined;
  return id && /^[0-9a-f-]{36}$/.test(id) ? id : null;
}

/** The `result` of a SlashID envelope, if it has one with an id. */
export function resultId(body: unknown): string | null {
  if (typeof body !== 'object' || body === null || !('result' in body)) return null;
  const r = (body as { result: unknown }).result;
  return typeof r === 'object' && r !== null && 'id' in r && typeof r.id === 'string' ? r.id : null;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}
