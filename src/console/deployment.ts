/**
 * The deployment at a glance, gathered by the serving region: every configured region's /healthz, /readyz,
 * /admin/replication and /admin/metadata-refresh, fetched in parallel with a short timeout each. A region
 * that does not answer is reported down; it never fails the whole answer. Only the configured regions'
 * URLs are fetched, never one taken from a request, so the IdP-metadata address policy does not apply.
 */
import type { ValidateFunction } from 'ajv';
import type { Config } from '../config';
import type { RegionConfig } from '../config-schema';
import { httpUrl, localHost } from '../http/url';
import { UPGRADE_REASONS } from '../replication/held-log';
import { PEER_COMMAND_TIMEOUT_MS } from '../replication/links';
import {
  checkHealth,
  checkMetadataRefresh,
  checkReadiness,
  checkReplication,
  type DeploymentStatus,
  type LagCell,
  type PeerMetadataRefresh,
  type PeerReplication,
  type RegionStatus,
} from './schema';

/** Each status call to a region gets this long; a SIGSTOPped region accepts the connection and never answers. */
export const PEER_TIMEOUT_MS = 1500;
/**
 * /admin/replication gets longer: it reads every region's Redis at once, each read bounded by
 * PEER_COMMAND_TIMEOUT_MS. With one Redis hung, every region's answer waits for that bound (twice it here, for a
 * loaded region); cut short, every region would read as not answering and the hung Redis would be named nowhere.
 */
const REPLICATION_EXTRA_MS = 2 * PEER_COMMAND_TIMEOUT_MS;
/** Failing metadata refreshes, and expired credentials not failing, listed per region (the counts cover all of them). */
const LISTED_FAILURES = 5;
/** Credentials a region's GET /admin/metadata-refresh lists at most (metadata-refresh-admin.ts). */
const LISTED_BY_REGION = 500;

/** Where a region is reached: its publicUrl, else http://host:port (a wildcard listen address means this host). */
export function regionUrl(r: RegionConfig): string {
  if (r.publicUrl) return r.publicUrl.replace(/\/+$/, '');
  return httpUrl(localHost(r.host ?? '127.0.0.1'), r.port);
}

type Answer<T> = { ok: true; body: T; ms: number } | { ok: false; problem: string };

async function getJson<T>(
  base: string,
  path: string,
  check: ValidateFunction<T>,
  opts: { token?: string; timeoutMs: number; statuses?: number[] },
): Promise<Answer<T>> {
  const started = Date.now();
  try {
    const res = await fetch(base + path, {
      headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
      signal: AbortSignal.timeout(opts.timeoutMs),
      redirect: 'error',
    });
    const text = await res.text();
    if (!(opts.statuses ?? [200]).includes(res.status)) return { ok: false, problem: `${path} answered ${res.status}` };
    const body: unknown = JSON.parse(text);
    if (!check(body)) return { ok: false, problem: `${path} answered in a form this version does not read` };
    return { ok: true, body, ms: Date.now() - started };
  } catch (err) {
    const e = err as Error;
    const why = e.name === 'TimeoutError' ? `no answer within ${opts.timeoutMs} ms` : e instanceof SyntaxError ? 'not JSON' : 'unreachable';
    return { ok: false, problem: `${path}: ${why}` };
  }
}

export interface Gathered {
  status: RegionStatus;
  replication: PeerReplication | null;
}

async function gatherRegion(r: RegionConfig, token: string, timeoutMs: number): Promise<Gathered> {
  const url = regionUrl(r);
  const [health, ready, repl, refresh] = await Promise.all([
    getJson(url, '/healthz', checkHealth, { timeoutMs }),
    getJson(url, '/readyz', checkReadiness, { timeoutMs, statuses: [200, 503] }),
    getJson(url, '/admin/replication', checkReplication, { token, timeoutMs: timeoutMs + REPLICATION_EXTRA_MS }),
    getJson(url, '/admin/metadata-refresh', checkMetadataRefresh, { token, timeoutMs }),
  ]);
  // A region that answers under another id is misconfigured, not this region: never show its figures as ours.
  const up = health.ok && health.body.region === r.id;
  // Down: one reason is enough (the other calls failed the same way).
  const problems = health.ok ? [ready, repl, refresh].flatMap((a) => (a.ok ? [] : [a.problem])) : [health.problem];
  // Its other routes then answer 503 too; this says why, and that no waiting mends it.
  if (up && ready.ok && ready.body.database === 'missing') {
    problems.unshift(`its database does not exist (dropped?): restart the region, which creates and migrates it, then re-seed it (npm run reseed -- --from <peer> --to ${r.id})`);
  }
  if (health.ok && !up) problems.unshift(`/healthz answered as region ${health.body.region}`);
  const replication = up && repl.ok ? repl.body : null;
  // A removed region's credentials that this region does not adopt yet (its share is then refreshed by no one).
  const adoption = up && refresh.ok ? refresh.body.adoption : undefined;
  if (adoption && !adoption.ready && adoption.departed.length > 0) {
    problems.push(`does not adopt yet the credentials of ${adoption.departed.join(', ')} (removed): ${adoption.waiting ?? 'no reason given'}`);
  }
  // Its Redis does not answer: nothing reaches it or leaves it, though every lag cell may read caught up
  // (they compare what the regions applied, and nothing moves).
  const redisDown = up ? redisDownOf(replication, health.body.redis) : null;
  if (redisDown !== null) {
    problems.push(`its Redis does not answer (${redisDown}): no change reaches this region or leaves it until it does; the lag figures cannot show that`);
  }
  // It started while its Redis did not answer: a database restored or replaced meanwhile is served as current until the check runs.
  if (replication?.start_check === 'pending') {
    problems.push("its database is not checked since it started (its Redis did not answer then): one restored from a backup or replaced would be served as current until its Redis answers and the check marks it for a re-seed");
  }
  return {
    replication,
    status: {
      id: r.id,
      url,
      up,
      ready: up && ready.ok ? ready.body.ready : null,
      response_ms: up && health.ok ? health.ms : null,
      problems,
      redis: up && health.ok ? (health.body.redis ?? null) : null,
      redis_down: redisDown,
      database: up && ready.ok ? ready.body.database : null,
      replication: replication && {
        outbox_unpublished: replication.outbox.unpublished,
        outbox_unconfirmed: replication.outbox.unconfirmed,
        oldest_unpublished_at: replication.outbox.oldest_unpublished_at,
        failing: replication.failures.failing,
        parked: replication.failures.parked,
        parked_for_upgrade: parkedForUpgrade(replication.failures),
        dead_letters: replication.stream.dead_letters,
        stream_connected: replication.stream.connected,
        waiting_requests: replication.waiting_requests,
      },
      metadata_refresh: up && refresh.ok ? refreshSummary(refresh.body) : null,
      backlog: null,
    },
  };
}

/**
 * Why a region's Redis reads as not answering, or null. The one rule for it: its problem here and the page's
 * `isolated` both read this (the page kept a copy of its own, which had drifted: a /healthz saying Redis was
 * not ready beside a stream status that read it turned the row red with no problem saying why). Either read
 * failing is enough: each asks the same Redis a moment apart, and a region of a version without /healthz's
 * `redis` is judged by its stream status alone.
 */
function redisDownOf(replication: PeerReplication | null, healthRedis: string | undefined): string | null {
  if (replication && !replication.stream.connected) return replication.stream.error ?? 'no reason given';
  if (healthRedis !== undefined && healthRedis !== 'ready') return `/healthz: ${healthRedis}`;
  return null;
}

/**
 * How many of a region's parked events wait for its upgrade (schema-ahead, unknown-table). A region of a version
 * before parked_by_reason (2026-12-05) is read from its oldest parked events, which carry their reason: exact
 * while it lists them all (up to 20), a lower bound after that (its Refused cell then stays red). Such a region is
 * the older one of a rolling upgrade, the very one holding the newer regions' changes; read as 0, its cell was red.
 */
function parkedForUpgrade(failures: PeerReplication['failures']): number {
  const byReason = failures.parked_by_reason;
  if (byReason) return [...UPGRADE_REASONS].reduce((n, reason) => n + (byReason[reason] ?? 0), 0);
  return (failures.oldest_parked ?? []).filter((p) => p.reason !== undefined && (UPGRADE_REASONS as ReadonlySet<string>).has(p.reason)).length;
}

/**
 * A region's refreshes as the console shows them: the first few failing, and the credentials whose stored
 * metadata expired. An expired one whose refreshes do not fail (a newer document held, or its refresh not due:
 * the refresher stopped, or its schedule put off) signed no one in while the console showed nothing of it.
 * The region counts the expired ones, and those of them failing; one of a version that does not (before
 * 2026-12-07) is counted here among the credentials it lists (up to 500, failing and held first): a lower bound
 * once it lists 500 (or fewer failing ones than it has), said as such.
 */
function refreshSummary(m: PeerMetadataRefresh): NonNullable<RegionStatus['metadata_refresh']> {
  const failing = m.credentials.filter((c) => c.consecutive_failures > 0);
  const failures = failing.slice(0, LISTED_FAILURES);
  const expired = m.credentials.flatMap((c) => (c.expired_since ? [{ ...c, expired_since: c.expired_since }] : []));
  const expiredNotFailing = expired.filter((c) => c.consecutive_failures === 0).slice(0, LISTED_FAILURES);
  return {
    failing: m.failing,
    failures: failures.map((c) => ({
      credential_id: c.credential_id,
      idp_metadata_url: c.idp_metadata_url,
      consecutive_failures: c.consecutive_failures,
      last_error: c.last_error,
      last_success_at: c.last_success_at,
      expired_since: c.expired_since ?? null,
    })),
    expired: m.expired ?? expired.length,
    ...(m.expired === undefined && m.credentials.length >= LISTED_BY_REGION ? { expired_is_bound: true as const } : {}),
    // How many of the failing ones expired, so the page counts each credential once (as failing, or as expired
    // while not failing). A region of a version that does not say: those it lists (failing first), exact while it
    // lists every failing one.
    failing_expired: m.failing_expired ?? failing.filter((c) => c.expired_since).length,
    ...(m.failing_expired === undefined && failing.length < m.failing ? { failing_expired_is_bound: true as const } : {}),
    expired_credentials: expiredNotFailing.map((c) => ({
      credential_id: c.credential_id,
      idp_metadata_url: c.idp_metadata_url,
      expired_since: c.expired_since,
      held_since: c.held_since ?? null,
      next_at: c.next_at ?? null,
    })),
  };
}

const time = (iso: string | null | undefined) => (iso ? Date.parse(iso) : null);

/**
 * A region this close behind an origin's newest applied event reads caught up: each region records what it
 * applied at most once a second (the applier's progress flush), so under a steady load two regions that are
 * both caught up differ by up to about that much, and the matrix flickered "behind 400 ms" (a helper's review).
 * behind_ms still says the figure.
 */
export const CAUGHT_UP_WITHIN_MS = 2000;

/**
 * Lag from each origin to each other region. A region is behind an origin when it has not applied the
 * newest event of that origin that some region has applied, or has parked one of its events; the gap is
 * measured in event time, so it grows with the writes a stalled region misses and is 0 once it has caught
 * up (null with a parked event: its gap is not known here).
 */
export function lagMatrix(regions: readonly Gathered[]): LagCell[] {
  const newest = new Map<string, number>();
  for (const g of regions) {
    for (const a of g.replication?.applied ?? []) {
      const t = time(a.last_event_at);
      if (t !== null && t > (newest.get(a.origin_region) ?? -Infinity)) newest.set(a.origin_region, t);
    }
  }
  const cells: LagCell[] = [];
  for (const origin of regions.map((g) => g.status.id)) {
    for (const g of regions) {
      if (g.status.id === origin) continue;
      const cell: LagCell = { origin, region: g.status.id, state: 'unknown', behind_ms: null, last_lag_ms: null, last_applied_at: null };
      if (!g.status.up) cell.state = 'down';
      if (g.replication) {
        const a = g.replication.applied.find((x) => x.origin_region === origin);
        const mine = time(a?.last_event_at);
        const top = newest.get(origin) ?? null;
        cell.last_lag_ms = a ? a.lag_ms : null;
        cell.last_applied_at = a?.last_applied_at ?? null;
        // Nothing from this origin has been applied anywhere yet: nothing to be behind on.
        cell.behind_ms = top === null ? 0 : mine === null ? null : Math.max(0, top - mine);
        cell.state = cell.behind_ms !== null && cell.behind_ms <= CAUGHT_UP_WITHIN_MS ? 'caught-up' : 'behind';
        // A change of the origin this region parked (its clock too far ahead, a table or columns this
        // version lacks) is not applied here: behind, by an unknown gap, however far its applies got (a
        // fault drill's region with a clock 2 minutes ahead read as caught up everywhere, its changes parked).
        const { parked_by_origin: byOrigin, oldest_parked: oldest } = g.replication.failures;
        if (byOrigin ? (byOrigin[origin] ?? 0) > 0 : oldest?.some((p) => p.origin_region === origin)) {
          cell.state = 'behind';
          cell.behind_ms = null;
        }
      }
      cells.push(cell);
    }
  }
  return cells;
}

export async function gatherDeployment(config: Pick<Config, 'region' | 'regions' | 'adminToken'>, timeoutMs = PEER_TIMEOUT_MS): Promise<DeploymentStatus> {
  const gathered = await Promise.all(config.regions.map((r) => gatherRegion(r, config.adminToken, timeoutMs)));
  return assembleDeployment(config.region.id, gathered, timeoutMs);
}

/**
 * The answer from what each configured region said: what regions say of each other goes to the region it is
 * about (a region that needs a re-seed, said by any region: a down one cannot say it of itself), and a member
 * of the deployment that this region's config lacks (one added elsewhere, joining) gets a row of its own,
 * without figures: its address is not known here.
 */
export function assembleDeployment(serving: string, gathered: Gathered[], timeoutMs: number): DeploymentStatus {
  const saidBy = new Map<string, string[]>();
  const unconfigured = new Map<string, { state: string; by: string[] }>();
  for (const g of gathered) {
    for (const id of g.replication?.needs_reseed ?? []) saidBy.set(id, [...(saidBy.get(id) ?? []), g.status.id]);
    for (const m of g.replication?.members ?? []) {
      if (gathered.some((x) => x.status.id === m.region)) continue;
      const u = unconfigured.get(m.region) ?? { state: m.state, by: [] };
      u.by.push(g.status.id);
      unconfigured.set(m.region, u);
    }
  }
  for (const g of gathered) {
    const by = saidBy.get(g.status.id);
    if (!by) continue;
    const whom = by.length === 1 && by[0] === g.status.id ? 'says so itself' : `says ${by.join(', ')}`;
    g.status.problems.push(
      `needs a re-seed from a peer (npm run reseed -- --from <peer> --to ${g.status.id}), unless one is under way (${whom}): its inbox lost changes it never applied, its database was restored from a backup, or it joined and was not re-seeded yet`,
    );
  }
  // The lag matrix of the regions that answered for themselves; members without figures have no cells.
  const lag = lagMatrix(gathered);
  for (const [id, u] of unconfigured) {
    gathered.push({
      replication: null,
      status: {
        id, url: '', up: null, ready: null, response_ms: null, redis: null, redis_down: null, database: null, replication: null, metadata_refresh: null, backlog: null,
        problems: [`a member of the deployment (${u.state}, says ${u.by.join(', ')}) that this region's config does not list: its address is not known here, so its figures are not shown; add it to every region's config`],
      },
    });
  }
  // Every region reads the one shared stream; the first that could read it tells each region's backlog.
  const view = gathered.find((g) => g.replication?.stream.connected)?.replication;
  for (const g of gathered) {
    const p = view?.pending.find((x) => x.region === g.status.id);
    g.status.backlog = p ? { undelivered: p.undelivered, pending_acks: p.pending_acks, ...(p.undelivered_is_bound === true ? { undelivered_is_bound: true as const } : {}) } : null;
  }
  return {
    region: serving,
    generated_at: new Date().toISOString(),
    timeout_ms: timeoutMs,
    regions: gathered.map((g) => g.status),
    lag,
  };
}
