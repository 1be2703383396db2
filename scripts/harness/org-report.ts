/**
 * The fault schedule's figures and failures for its other organizations (org-load.ts): what their clients
 * and deletes were answered, and what verifyOrgs found after the regions converged.
 */
import type { OrgLoadResult } from './org-load';
import type { OrgVerdict, Served } from './verify';

export interface OrgFigures {
  orgs: { id: string; deleted: null | { consistency: string; atMs: number; attempts: string[]; acked: string | null }; tried: number; acknowledged: number; refusedAfterDelete: number }[];
  /** Summed over their loads (as the main load's figures). */
  tried: number;
  answered: number;
  acknowledged: number;
  patches: number;
  deletes: number;
  refusedAfterDelete: number;
  ackedAfterDelete: number;
  /** Credentials of deleted organizations tombstoned after their organization (the sweep's, mostly). */
  tombstonedAfter: number;
  servedAfterRefusal: number;
  server5xx: number;
  otherStatus: number;
  allRegionsEarly: number;
  /** Delete answers that were neither an acknowledgement nor a miss to retry, and deletes never acknowledged. */
  deleteUnexpected: string[];
  lost: OrgVerdict['lost'];
  undeleted: OrgVerdict['undeleted'];
  wrongLabel: OrgVerdict['wrongLabel'];
  /** ms from the end of the faults until no region held a live row of a deleted organization (null: not within the limit). */
  sweptMs: number | null;
  liveAfterSweep: OrgVerdict['swept']['live'];
  /** ms the digests took to agree again after the sweep (null: did not; absent when none was deleted). */
  reconvergedMs?: number | null;
  served: Served[];
  samples: string[];
}

export function orgFigures(run: OrgLoadResult, v: OrgVerdict): OrgFigures {
  const sum = (pick: (f: OrgLoadResult['orgs'][number]['load']['figures']) => number) => run.orgs.reduce((n, x) => n + pick(x.load.figures), 0);
  return {
    orgs: run.orgs.map(({ org, load }) => ({
      id: org.org.id,
      deleted: org.delete ? { consistency: org.delete.consistency, atMs: Math.round(org.delete.atMs), attempts: org.delete.attempts, acked: org.delete.acked } : null,
      tried: load.figures.tried + load.figures.patches + load.figures.deletes,
      acknowledged: load.acked.size,
      refusedAfterDelete: load.figures.refusedAfterDelete,
    })),
    tried: sum((f) => f.tried),
    answered: sum((f) => f.answered),
    acknowledged: run.orgs.reduce((n, x) => n + x.load.acked.size, 0),
    patches: sum((f) => f.patches),
    deletes: sum((f) => f.deletes),
    refusedAfterDelete: sum((f) => f.refusedAfterDelete),
    ackedAfterDelete: sum((f) => f.ackedAfterDelete),
    tombstonedAfter: v.tombstonedAfter,
    servedAfterRefusal: sum((f) => f.servedAfterRefusal),
    server5xx: sum((f) => f.server5xx) + run.server5xx,
    otherStatus: sum((f) => f.otherStatus),
    allRegionsEarly: sum((f) => f.allRegionsEarly),
    deleteUnexpected: run.unexpected,
    lost: v.lost,
    undeleted: v.undeleted,
    wrongLabel: v.wrongLabel,
    sweptMs: v.swept.ms,
    liveAfterSweep: v.swept.live,
    ...(v.reconverged ? { reconvergedMs: v.reconverged.ms } : {}),
    served: v.served,
    samples: run.orgs.flatMap((x) => x.load.figures.samples).slice(0, 10),
  };
}

export function orgFailures(f: OrgFigures, convergeLimitS: number): string[] {
  const out: string[] = [];
  if (f.lost.length) out.push(`${f.lost.length} acknowledged writes to a kept organization are missing in some region`);
  if (f.undeleted.length) out.push(`${f.undeleted.length} acknowledged DELETEs left a kept organization's credential live in some region`);
  if (f.wrongLabel.length) out.push(`${f.wrongLabel.length} credentials of a kept organization hold a label no acknowledged-or-later write gave them`);
  if (f.server5xx) out.push(`${f.server5xx} answers to the other organizations' writes and deletes were 5xx`);
  if (f.otherStatus) out.push(`${f.otherStatus} answers to the other organizations' writes had an unexpected status`);
  if (f.allRegionsEarly) out.push(`${f.allRegionsEarly} all_regions creates of the other organizations answered 201 were missing in some region's database right after the answer`);
  if (f.servedAfterRefusal) out.push(`${f.servedAfterRefusal} writes to a deleted organization were answered 2xx by a region that had refused its key before`);
  if (f.deleteUnexpected.length) out.push(`${f.deleteUnexpected.length} organization deletes were answered unexpectedly or never acknowledged`);
  if (f.sweptMs === null || f.sweptMs > convergeLimitS * 1000) out.push(`rows of deleted organizations were still live in some region ${convergeLimitS} s after the faults`);
  if (f.reconvergedMs === null || (f.reconvergedMs ?? 0) > convergeLimitS * 1000) out.push(`the regions did not converge again within ${convergeLimitS} s after the deleted organizations were swept`);
  if (f.served.length) out.push(`${f.served.length} answers served a deleted organization or refused a kept one`);
  return out;
}

export function orgTable(f: OrgFigures): string[] {
  if (f.orgs.length === 0) return [];
  const deleted = f.orgs.filter((o) => o.deleted);
  const local = deleted.filter((o) => o.deleted?.consistency === 'local_region').length;
  const secs = (ms: number | null | undefined) => (ms === null || ms === undefined ? 'not within the limit' : `${(ms / 1000).toFixed(1)} s`);
  const rows: [string, string | number][] = [
    ['other organizations / deleted', `${f.orgs.length} / ${deleted.length} (${local} local_region, ${deleted.length - local} all_regions)`],
    ['  their creates tried / answered / acked', `${f.tried} / ${f.answered} / ${f.acknowledged}`],
    ['  PATCH / DELETE sent', `${f.patches} / ${f.deletes}`],
    ['  after a delete: refused (401/409/404) / 2xx', `${f.refusedAfterDelete} / ${f.ackedAfterDelete}`],
    ['  5xx / other / served after refusal', `${f.server5xx} / ${f.otherStatus} / ${f.servedAfterRefusal}`],
    ['  kept: lost / undeleted / wrong label', `${f.lost.length} / ${f.undeleted.length} / ${f.wrongLabel.length}`],
    ['  deleted: swept everywhere after', `${secs(f.sweptMs)} (credentials tombstoned after their organization: ${f.tombstonedAfter})`],
    ['  converged again after the sweep', deleted.length ? secs(f.reconvergedMs) : '-'],
    ['  answers serving a deleted org (or not a kept one)', f.served.length],
  ];
  return [
    ...rows.map(([k, v]) => `  ${k.padEnd(36)} ${v}`),
    ...deleted.map((o) => `  deleted ${o.id} (${o.deleted?.consistency}, at ${((o.deleted?.atMs ?? 0) / 1000).toFixed(1)} s): ${o.deleted?.attempts.join(', ')}; ${o.refusedAfterDelete} writes refused after`),
    ...f.samples.map((s) => `  sample (other organizations): ${s}`),
    ...f.deleteUnexpected.slice(0, 10).map((s) => `  delete: ${s}`),
    ...f.lost.slice(0, 10).map((l) => `  lost (kept organization): ${l.id} (acknowledged by ${l.ackedBy}) missing in ${l.missingIn.join(', ')}`),
    ...Object.entries(f.liveAfterSweep).slice(0, 10).map(([r, live]) => `  live rows of deleted organizations in ${r}: ${JSON.stringify(live)}`),
    ...f.served.slice(0, 10).map((s) => `  served: ${s.region} ${s.what} of ${s.org}: ${s.status}, expected ${s.expected}`),
  ];
}
