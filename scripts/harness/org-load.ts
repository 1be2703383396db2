/**
 * The fault schedule's organizations besides the main one. Before the faults each is created with
 * all_regions and given an access token and an Infisical config (so both dialects have something of it to
 * serve); during the faults a client in each region writes its credentials as the main load does (creates,
 * PATCHes, DELETEs), and some of them are deleted with DELETE /admin/organizations/{id}, local_region and
 * all_regions in turn, from one region while the other regions' clients keep writing. A write that loses to
 * the delete may be answered 401 (its key refused once the delete reached that region) or, for a PATCH or
 * DELETE, 404; one acknowledged before the delete reached its region is not lost: the delete (or, for a row
 * the delete did not see, the tombstone collector's sweep) takes it with the organization.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sleep } from './common';
import { adminHeaders, createOrg, isDatabaseUnavailable, RegionClient, type Org, type Reply } from './client';
import { Load, type LoadOptions, type LoadResult } from './load';

export const INFISICAL_CONFIG_PATH = '/api/v1/sso/config';
/** Between two attempts of an organization's delete that was not acknowledged. */
const DELETE_RETRY_MS = 1000;
/** How long after the load a delete not yet acknowledged may still be tried (every fault is healed by then). */
const DELETE_GRACE_MS = 60_000;

export interface OrgLoadOptions {
  orgs: number;
  /** Share of them deleted during the faults (rounded up; 0 deletes none). */
  deleteShare: number;
  /** Clients writing each organization's credentials, one region after another. */
  clientsPerOrg: number;
  /** The deletes are spread over 20 to 80 % of this. */
  durationMs: number;
  load: Omit<LoadOptions, 'clients' | 'minCreates' | 'minDurationMs' | 'deleteSentAt' | 'label'>;
  label: string;
  say: (msg: string) => void;
}

export interface OrgDelete {
  consistency: 'local_region' | 'all_regions';
  /** From the start of the load. */
  atMs: number;
  /** When it was first sent (Date.now()). */
  sentAt: number | null;
  /** Each attempt's answer, in order ("us-iowa 204", "asia-japan connection error"). */
  attempts: string[];
  /** The answer that settled it (a 204, a 408 of a committed delete, or a 404 after an attempt that committed); null if none did. */
  acked: string | null;
}

export interface ExtraOrg {
  org: Org;
  /** An Infisical access token of the organization (issued before the faults). */
  token: string;
  delete: OrgDelete | null;
}

export interface OrgLoadResult {
  orgs: { org: ExtraOrg; load: LoadResult }[];
  /** Delete answers that are neither an acknowledgement nor a retryable miss (5xx, 409, a first 404...). */
  unexpected: string[];
  server5xx: number;
  /** 503 "database unavailable" answers to the deletes, for the schedule's Postgres-restart excuse. */
  databaseUnavailable: Array<{ region: string; at: number }>;
}

/** A self-signed certificate valid for 30 days: the Infisical configs' `cert` (judged against the real clock). */
function certificate(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'harness-cert-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/CN=idp.harness.example', '-keyout', 'k.pem', '-out', 'c.pem'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    return fs.readFileSync(path.join(dir, 'c.pem'), 'utf8');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function expectStatus(res: Reply, status: number, what: string): Record<string, unknown> {
  if (res.status !== status) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body ?? {}) as Record<string, unknown>;
}

export class OrgLoad {
  private readonly loads: Load[];
  private loadRuns: Promise<LoadResult>[] = [];
  private deleteRuns: Promise<void>[] = [];
  private stopped = false;
  private giveUpAt = Number.MAX_SAFE_INTEGER;
  private readonly unexpected: string[] = [];
  private readonly unavailable: Array<{ region: string; at: number }> = [];
  private server5xx = 0;

  private constructor(
    private readonly o: OrgLoadOptions,
    private readonly clients: readonly RegionClient[],
    private readonly adminToken: string,
    readonly orgs: readonly ExtraOrg[],
  ) {
    this.loads = orgs.map((x, k) => {
      // Organization k's clients start at region k, so each region writes to every organization.
      const rotated = clients.map((_, i) => clients[(i + k) % clients.length]).filter((c): c is RegionClient => !!c);
      const sentAt = () => x.delete?.sentAt ?? null;
      return new Load(
        { ...o.load, clients: o.clientsPerOrg, minCreates: Number.MAX_SAFE_INTEGER, minDurationMs: 0, label: `${o.label}-o${k}`, ...(x.delete ? { deleteSentAt: sentAt } : {}) },
        rotated,
        x.org,
      );
    });
  }

  /** Creates the organizations (all_regions, so every region holds them and their keys), their tokens and Infisical configs. */
  static async setup(clients: readonly RegionClient[], adminToken: string, o: OrgLoadOptions): Promise<OrgLoad> {
    const cert = o.orgs > 0 ? certificate() : '';
    const deleted = Math.ceil(o.orgs * o.deleteShare);
    const orgs: ExtraOrg[] = [];
    for (let k = 0; k < o.orgs; k++) {
      const c = clients[k % clients.length];
      if (!c) throw new Error('no regions');
      const org = await createOrg(c, adminToken, `${o.label}-o${k}`);
      const issued = expectStatus(await c.call('POST', `/admin/organizations/${org.id}/access-tokens`, { headers: adminHeaders(adminToken) }), 201, `an access token of ${org.id}`);
      const token = String(issued.access_token);
      expectStatus(
        await c.call('POST', INFISICAL_CONFIG_PATH, {
          headers: { authorization: `Bearer ${token}`, 'SlashID-Required-Consistency': 'all_regions' },
          body: { organizationId: org.id, authProvider: 'okta-saml', isActive: true, entryPoint: 'https://idp.harness.example/sso/saml', issuer: 'http://idp.harness.example', cert },
        }),
        200,
        `the Infisical config of ${org.id}`,
      );
      orgs.push({ org, token, delete: null });
    }
    // Every other organization first (so the kept ones are spread among them), spread over the middle of the
    // run, local_region and all_regions in turn.
    const order = [...orgs.filter((_, k) => k % 2 === 0), ...orgs.filter((_, k) => k % 2 === 1)].slice(0, deleted);
    order.forEach((x, j) => {
      x.delete = { consistency: j % 2 === 0 ? 'local_region' : 'all_regions', atMs: o.durationMs * (0.2 + (0.6 * (j + 0.5)) / deleted), sentAt: null, attempts: [], acked: null };
    });
    return new OrgLoad(o, clients, adminToken, orgs);
  }

  /** Starts the loads and the deletes (each at its time from `loadStart`). */
  start(loadStart: number): void {
    this.loadRuns = this.loads.map((l) => l.run());
    this.deleteRuns = this.orgs.map((x) => (x.delete ? this.deleteOrg(x.org, x.delete, loadStart) : Promise.resolve()));
  }

  /** Ends the loads (resolves when every client has its answer); a delete not yet acknowledged is tried for DELETE_GRACE_MS more. */
  async stopLoads(): Promise<void> {
    this.stopped = true;
    this.giveUpAt = Date.now() + DELETE_GRACE_MS;
    for (const l of this.loads) l.stop();
    await Promise.all(this.loadRuns);
  }

  /** Once the deletes are acknowledged (or given up): what happened. */
  async finish(): Promise<OrgLoadResult> {
    const results = await Promise.all(this.loadRuns);
    await Promise.all(this.deleteRuns);
    return {
      orgs: this.orgs.map((org, k) => ({ org, load: results[k] as LoadResult })),
      unexpected: this.unexpected,
      server5xx: this.server5xx,
      databaseUnavailable: this.unavailable,
    };
  }

  get tried(): number {
    return this.loads.reduce((n, l) => n + l.tried, 0);
  }

  private async deleteOrg(org: Org, d: OrgDelete, loadStart: number): Promise<void> {
    while (!this.stopped && Date.now() < loadStart + d.atMs) await sleep(Math.min(250, loadStart + d.atMs - Date.now()));
    let c = this.clients[Math.floor(Math.random() * this.clients.length)];
    while (c && d.acked === null && Date.now() < this.giveUpAt) {
      const headers = adminHeaders(this.adminToken, d.consistency === 'all_regions' ? { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '2' } : {});
      d.sentAt ??= Date.now();
      const answer = await c.call('DELETE', `/admin/organizations/${org.id}`, { headers }).catch(() => null);
      const first = d.attempts.length === 0;
      const said = answer ? `${c.region} ${answer.status}` : `${c.region} connection error`;
      d.attempts.push(said);
      if (answer?.status === 204 || (answer?.status === 408 && answer.headers['x-change-id'])) d.acked = said;
      // A retry of a delete that committed: gone in that region already.
      else if (answer?.status === 404 && !first) d.acked = `${said} (an earlier attempt committed)`;
      else if (answer && isDatabaseUnavailable(answer)) this.unavailable.push({ region: c.region, at: Date.now() });
      else if (answer && answer.status !== 408) {
        if (answer.status >= 500) this.server5xx++;
        this.unexpected.push(`DELETE of organization ${org.id} in ${said}: ${JSON.stringify(answer.body).slice(0, 300)}`);
      }
      if (d.acked !== null) {
        this.o.say(`organization ${org.id} deleted (${d.consistency}): ${d.attempts.join(', ')}`);
        return;
      }
      await sleep(DELETE_RETRY_MS);
      c = this.clients[Math.floor(Math.random() * this.clients.length)];
    }
    if (d.acked === null) this.unexpected.push(`DELETE of organization ${org.id} never acknowledged: ${d.attempts.join(', ') || 'not sent'}`);
  }
}
