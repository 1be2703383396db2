/**
 * The write load of the fault schedule: concurrent clients, spread over the regions, each creating SAML
 * provider credentials one after another with a unique label. A client records what the service answered:
 * an id acknowledged by 201 (or by a 408 whose Location names the credential it committed) must survive every fault.
 * A connection error or a timeout is not an answer; the client notes it, waits a moment and goes on.
 */
import { sleep } from './common';
import { CREDENTIALS_PATH, isDatabaseUnavailable, orgHeaders, writtenId, type Org, type RegionClient } from './client';

export interface LoadOptions {
  clients: number;
  /** Stop once the service has answered at least this many creates (connection errors do not count)... */
  minCreates: number;
  /** ...and at least this long has passed. */
  minDurationMs: number;
  /** Share of creates sent with all_regions (the rest local_region), to exercise the 408 of a committed create. */
  allRegionsShare: number;
  allRegionsTimeoutS: number;
  idpUrl: string;
  label: string;
  /**
   * Called right after an all_regions create answered 201: the regions that do not hold it (a 201 under
   * all_regions says every region applied it). Optional.
   */
  missingAfterAllRegions?: (id: string) => Promise<string[]>;
  /**
   * Shares of a client's requests that PATCH (a new label) or DELETE one of the credentials it created
   * (the rest create), with the same consistency mix. 0 by default.
   */
  patchShare?: number;
  deleteShare?: number;
  /**
   * When the organization's delete was first sent (Date.now()), null before; omitted for an organization
   * the run never deletes. Once sent, a 401 (its key refused) and, for a PATCH or DELETE, a 404 (the
   * credential went with it) are the answers of a write that lost to the delete, not failures.
   */
  deleteSentAt?: () => number | null;
}

/**
 * What a credential of the load must look like in every region at the end: deleted (an acknowledged
 * DELETE), or live with one of `labels` (the last acknowledged write's label, or that of any PATCH whose
 * answer was not a 204, which may land later). `deleted: 'maybe'`: a DELETE was sent and not acknowledged;
 * not judged.
 */
export interface Expected {
  labels: Set<string>;
  /** Labels of PATCHes whose answer did not say 204: any may still land (a request held by a partition, say). */
  unsure: Set<string>;
  deleted: 'no' | 'acked' | 'maybe';
}

export interface LoadFigures {
  tried: number;
  /** Creates the service answered with any HTTP status. */
  answered: number;
  acked201: number;
  acked408: number;
  /** 408 without a Location: the local commit did not finish in time; the outcome is unknown. */
  unanswered408: number;
  connectionErrors: number;
  timeouts: number;
  server5xx: number;
  /**
   * 503s with Retry-After saying the region's database is not there or ended the connection (not in
   * server5xx): the fault schedule excuses those that came while that region's Postgres was restarted.
   */
  databaseUnavailable: number;
  /** 400 because the region could not fetch the IdP metadata (expected while it is partitioned). */
  metadataRefused: number;
  otherStatus: number;
  /** PATCHes and DELETEs sent / acknowledged (204). */
  patches: number;
  patchesAcked: number;
  deletes: number;
  deletesAcked: number;
  /** all_regions creates answered 201 that some region's database did not hold right after the answer. */
  allRegionsEarly: number;
  /** 401s and 409s, and 404s of PATCHes and DELETEs, answered after the organization's delete was sent (see deleteSentAt). */
  refusedAfterDelete: number;
  /** Writes answered 2xx after the organization's delete was sent: they raced it (and lost to it, or were first). */
  ackedAfterDelete: number;
  /** 2xx answers to requests sent after the same region had refused the organization's key (401): a deleted organization served again. */
  servedAfterRefusal: number;
  perRegion: Record<string, { tried: number; acked: number; errors: number; p50Ms: number; p99Ms: number }>;
  /** A few 5xx / unexpected answers, for the report. */
  samples: string[];
}

export interface LoadResult {
  figures: LoadFigures;
  /** Every acknowledged id, with the region that acknowledged it. */
  acked: Map<string, string>;
  /** The acknowledged creates' expected end states (see Expected). */
  expected: Map<string, Expected>;
  /** When each of figures.databaseUnavailable came (Date.now()), and from which region. */
  databaseUnavailable: Array<{ region: string; at: number }>;
}

const PAUSE_AFTER_ERROR_MS = 150;
/** A client of a deleted organization keeps writing (another region may not have the delete yet), but does not spin on 401s... */
const PAUSE_AFTER_REFUSAL_MS = 250;
/** ...and stops this long after its region first refused the organization's key (the rest of a long run would only add 401s). */
const WRITE_AFTER_REFUSAL_MS = 5000;

export class Load {
  private stopped = false;
  private started = 0;
  private readonly acked = new Map<string, string>();
  private readonly latencies = new Map<string, number[]>();
  private readonly unavailable: Array<{ region: string; at: number }> = [];
  private readonly probes: Promise<void>[] = [];
  private readonly expected = new Map<string, Expected>();
  /** Per region, when it first refused the organization's key (401) after its delete was sent. */
  private readonly refusedAt = new Map<string, number>();
  private readonly f: LoadFigures = {
    tried: 0, answered: 0, acked201: 0, acked408: 0, unanswered408: 0, connectionErrors: 0, timeouts: 0, server5xx: 0, databaseUnavailable: 0, metadataRefused: 0,
    otherStatus: 0, patches: 0, patchesAcked: 0, deletes: 0, deletesAcked: 0, allRegionsEarly: 0, refusedAfterDelete: 0, ackedAfterDelete: 0, servedAfterRefusal: 0, perRegion: {}, samples: [],
  };

  constructor(
    private readonly o: LoadOptions,
    private readonly clients: readonly RegionClient[],
    private readonly org: Org,
  ) {
    for (const c of clients) {
      this.f.perRegion[c.region] = { tried: 0, acked: 0, errors: 0, p50Ms: 0, p99Ms: 0 };
      this.latencies.set(c.region, []);
    }
  }

  get tried(): number {
    return this.f.tried;
  }

  get acknowledged(): number {
    return this.acked.size;
  }

  /** Runs until both minimums are met (or stop()); resolves when every client has finished its request. */
  async run(): Promise<LoadResult> {
    this.started = Date.now();
    await Promise.all(Array.from({ length: this.o.clients }, (_, i) => this.client(i)));
    await Promise.all(this.probes);
    for (const [region, l] of this.latencies) {
      l.sort((a, b) => a - b);
      const r = this.f.perRegion[region];
      if (r) Object.assign(r, { p50Ms: l[Math.floor(l.length / 2)] ?? 0, p99Ms: l[Math.max(0, Math.ceil(l.length * 0.99) - 1)] ?? 0 });
    }
    return { figures: this.f, acked: this.acked, expected: this.expected, databaseUnavailable: this.unavailable };
  }

  stop(): void {
    this.stopped = true;
  }

  private done(): boolean {
    return this.stopped || (this.f.answered >= this.o.minCreates && Date.now() - this.started >= this.o.minDurationMs);
  }

  private async client(i: number): Promise<void> {
    const c = this.clients[i % this.clients.length];
    if (!c) return;
    const stats = this.f.perRegion[c.region] ?? { tried: 0, acked: 0, errors: 0, p50Ms: 0, p99Ms: 0 };
    let backoff = PAUSE_AFTER_ERROR_MS;
    // This client's live credentials (acknowledged creates not sent a DELETE since): it alone writes them.
    const mine: string[] = [];
    for (let seq = 0; !this.done() && !this.doneAfterRefusal(c.region); seq++) {
      const allRegions = Math.random() < this.o.allRegionsShare;
      const headers = orgHeaders(
        this.org,
        allRegions ? { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': String(this.o.allRegionsTimeoutS) } : {},
      );
      const pick = Math.random();
      const patchShare = this.o.patchShare ?? 0;
      if (mine.length && pick < patchShare + (this.o.deleteShare ?? 0)) {
        const at = Math.floor(Math.random() * mine.length);
        const id = mine[at] ?? '';
        const e = this.expected.get(id);
        if (!e) continue;
        const del = pick >= patchShare;
        if (del) mine.splice(at, 1);
        const label = `${this.o.label}-c${i}-${seq}-p`;
        if (del) this.f.deletes++;
        else this.f.patches++;
        let acked = false;
        const sentAt = Date.now();
        try {
          const res = await c.call(del ? 'DELETE' : 'PATCH', `${CREDENTIALS_PATH}/${id}`, { headers, ...(del ? {} : { body: { label } }) });
          backoff = PAUSE_AFTER_ERROR_MS;
          acked = res.status === 204;
          this.judgeAfterDelete(c.region, res.status, sentAt, `${del ? 'DELETE' : 'PATCH'} ${id}`);
          if (acked) {
            if (del) this.f.deletesAcked++;
            else this.f.patchesAcked++;
          } else if (res.status === 408) {
            // not known whether it will hold (a 408 of a write that committed says so; one that did not may still commit)
          } else if (this.lostToDelete(res.status, false)) {
            // the organization's delete was sent: a write that lost to it
            await sleep(PAUSE_AFTER_REFUSAL_MS);
          } else if (isDatabaseUnavailable(res)) {
            this.f.databaseUnavailable++;
            this.unavailable.push({ region: c.region, at: Date.now() });
          } else if (res.status >= 500) {
            this.f.server5xx++;
            this.sample(`${c.region} ${del ? 'DELETE' : 'PATCH'} ${res.status} ${JSON.stringify(res.body)}`);
          } else {
            this.f.otherStatus++;
            this.sample(`${c.region} ${del ? 'DELETE' : 'PATCH'} ${res.status} ${JSON.stringify(res.body)}`);
          }
          if (res.status >= 500) await sleep(PAUSE_AFTER_ERROR_MS);
        } catch {
          stats.errors++;
          await sleep(backoff);
          backoff = Math.min(1000, backoff * 2);
        }
        if (del) e.deleted = acked ? 'acked' : 'maybe';
        else if (acked) e.labels = new Set([label, ...e.unsure]);
        else {
          e.unsure.add(label);
          e.labels.add(label);
        }
        continue;
      }
      const body = { idp_metadata_url: this.o.idpUrl, label: `${this.o.label}-c${i}-${seq}` };
      this.f.tried++;
      stats.tried++;
      const t0 = Date.now();
      let ok = false;
      try {
        const res = await c.call('POST', CREDENTIALS_PATH, { headers, body });
        this.f.answered++;
        backoff = PAUSE_AFTER_ERROR_MS;
        this.judgeAfterDelete(c.region, res.status, t0, `create ${body.label}`);
        const id = writtenId(res);
        if (res.status === 201 && id) {
          this.f.acked201++;
          ok = true;
          this.latencies.get(c.region)?.push(Date.now() - t0);
          const probe = this.o.missingAfterAllRegions;
          if (allRegions && probe) {
            const answeredAt = Date.now();
            this.probes.push(probe(id).then((missing) => {
              if (missing.length === 0) return;
              this.f.allRegionsEarly++;
              this.sample(`${c.region} answered 201 under all_regions for ${id}, which ${missing.join(', ')} did not hold ${Date.now() - answeredAt} ms later`);
            }));
          }
        } else if (res.status === 408 && id) {
          this.f.acked408++;
          ok = true;
        } else if (res.status === 408) this.f.unanswered408++;
        else if (this.lostToDelete(res.status, true)) {
          // the organization's delete was sent: a create that lost to it
          await sleep(PAUSE_AFTER_REFUSAL_MS);
        } else if (isDatabaseUnavailable(res)) {
          this.f.databaseUnavailable++;
          this.unavailable.push({ region: c.region, at: Date.now() });
        } else if (res.status >= 500) {
          this.f.server5xx++;
          this.sample(`${c.region} ${res.status} ${JSON.stringify(res.body)}`);
        } else if (res.status === 400 && JSON.stringify(res.body).includes('idp_metadata_url was refused')) {
          this.f.metadataRefused++;
          this.sample(`${c.region} ${res.status} ${JSON.stringify(res.body)}`);
        } else {
          this.f.otherStatus++;
          this.sample(`${c.region} ${res.status} ${JSON.stringify(res.body)}`);
        }
        if (ok && id) {
          this.acked.set(id, c.region);
          this.expected.set(id, { labels: new Set([body.label]), unsure: new Set(), deleted: 'no' });
          mine.push(id);
          stats.acked++;
        }
        if (res.status >= 500) await sleep(PAUSE_AFTER_ERROR_MS);
      } catch (err) {
        const code = String((err as { code?: unknown }).code ?? '');
        if (code.includes('TIMEOUT')) this.f.timeouts++;
        else this.f.connectionErrors++;
        stats.errors++;
        // The region is down or cut off: back off (up to a second) rather than spin on it.
        await sleep(backoff);
        backoff = Math.min(1000, backoff * 2);
      }
    }
  }

  private doneAfterRefusal(region: string): boolean {
    const refused = this.refusedAt.get(region);
    return refused !== undefined && Date.now() - refused > WRITE_AFTER_REFUSAL_MS;
  }

  /**
   * A 401 (or a PATCH's or DELETE's 404) once the organization's delete was sent: counted, not a failure. So is a
   * 409: a write committed in its region that then lost to the delete's tombstone (or the sweep's) made in another
   * (seen in the short schedule: an asia-japan PATCH waiting for all_regions, the delete made in us-iowa). Before a
   * delete no 409 is expected: each client writes only the credentials it created.
   */
  private lostToDelete(status: number, create: boolean): boolean {
    if (this.o.deleteSentAt?.() == null || !(status === 401 || status === 409 || (!create && status === 404))) return false;
    this.f.refusedAfterDelete++;
    return true;
  }

  /**
   * A region that refused the organization's key after its delete holds the delete for good (a tombstone in
   * its database; the key cache is dropped when it commits or applies): a 2xx there to a request sent after
   * that refusal served a deleted organization.
   */
  private judgeAfterDelete(region: string, status: number, sentAt: number, what: string): void {
    if (this.o.deleteSentAt?.() == null) return;
    const refused = this.refusedAt.get(region);
    if (status === 401 && refused === undefined) this.refusedAt.set(region, Date.now());
    if (status >= 200 && status < 300) this.f.ackedAfterDelete++;
    if (status >= 200 && status < 300 && refused !== undefined && sentAt > refused) {
      this.f.servedAfterRefusal++;
      this.sample(`${region} answered ${status} to ${what}, sent ${sentAt - refused} ms after it refused the deleted organization's key`);
    }
  }

  private sample(s: string): void {
    if (this.f.samples.length < 10) this.f.samples.push(s.slice(0, 400));
  }
}
