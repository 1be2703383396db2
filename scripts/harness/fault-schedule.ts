/**
 * `npm run test:faults`: the fault-schedule test. On a fresh harness stack (each region with its own Redis,
 * with an append-only file; `--shared-redis`: one Redis for all), concurrent clients create credentials in
 * every region while regions are killed -9 and restarted, one region is cut off from the others for a
 * while, another is partitioned entirely (its Redis with it), a region's Redis is killed and restarted, and
 * a region's Postgres is restarted. Then it checks that no acknowledged write was lost in any region and
 * that all regions converge to identical content (per-table digests) in time. Alongside, a few other
 * organizations are written from every region and half of them deleted during the faults (org-load.ts):
 * afterwards a deleted one has no live row and is served nowhere, a kept one lost nothing. Exits 0 only if lost = 0, no
 * 5xx or unexpected answer (but a 503 "database unavailable" from a region while its Postgres restarts),
 * every fault recovered and convergence <= limit.
 */
import fs from 'node:fs';
import { regionSpecs } from './cli';
import { ackFigures, createOrg, RegionClient } from './client';
import { conflictsOk, conflictTable, runConflicts, type ConflictFigures } from './conflicts';
import { answerHelp } from '../usage';
import { ackSignaturesFlag, intFlag, log, numFlag, parseFlags, refuseArguments, requireRoot, runMain, UsageError, type Flags } from './common';
import { FaultSchedule } from './faults';
import { Load, type LoadFigures } from './load';
import { OrgLoad } from './org-load';
import { orgFailures, orgFigures, orgTable, type OrgFigures } from './org-report';
import { Stack, type PartitionMode } from './stack';
import type { AckSignatures } from '../../src/replication/ack-auth';
import { AllRegionsProbe, checkAcknowledged, verifyOrgs, waitConverged, type LossCheck } from './verify';

/** How long after its Postgres accepted connections again a region may still answer 503 "database unavailable". */
const DATABASE_GRACE_MS = 5000;

const USAGE = `usage: npm run test:faults -- [--short] [options]
  --creates N          at least N creates answered by the service (default 10000; --short 600)
  --duration S         and run the load and the faults for at least S seconds (default 60; --short 30)
  --clients N          concurrent clients, spread over the regions (default 24)
  --kill-every S       kill -9 a random region about every S seconds (default 4; 0 = never)
  --restart-after S    start a killed region again after S seconds (default 1.5)
  --partition S        partition one region for S seconds, a quarter into the run (default 10; 0 = never)
  --partition-mode M   wan (default): cut the region from the other regions (and their Redis), its clients
                       still reach it; link: take its link down, nothing reaches it
  --isolate S          partition another region entirely (link down: its clients, its own Redis, the other
                       regions) for S seconds, three quarters into the run (default 8; 0 = never)
  --redis-restart KILL|TERM|no   kill a region's Redis (the shared one with --shared-redis) once with this
                       signal and start it again (default KILL)
  --redis-restart-at F when: this fraction into --duration, from 0 (as the load starts) to below 1 (default 0.6)
  --postgres-restart INT|QUIT|no   stop a region's Postgres once (INT: fast shutdown, ending its sessions;
                       QUIT: immediate, as a crash) and start it again after a second (default INT); the
                       region's 503s with Retry-After while it is down, and until 5 s after, are expected
  --postgres-restart-at F   when: this fraction into --duration, from 0 to below 1 (default 0.45)
  --stall S            three times (at 35, 65 and 90 % of --duration) lock a region's credential tables
                       for S seconds, so that every write there waits, and kill -9 the region and end its database sessions meanwhile
                       (default 1.5; 0 = never)
  --redis-aof yes|no   Redis persistence (default yes; no = a restart loses the inbox, acks and groups)
  --shared-redis       one Redis host for every region (the topology before per-region Redis)
  --ack-signatures M   the regions' config ackSignatures: off, sign or require (default require)
  --all-regions F      share of writes sent with all_regions and a 2 s timeout (default 0.1)
  --patches F          share of writes that PATCH a credential the client created (default 0.15)
  --deletes F          share of writes that DELETE one (default 0.05)
  --orgs N             other organizations, each written by --org-clients clients (default 6; --short 4)
  --org-deletes F      share of them deleted during the faults, local_region and all_regions in turn (default 0.5)
  --org-clients N      clients per other organization, one region after another (default 3)
  --tombstone-interval S   the regions' tombstone collection interval, whose cycle also sweeps a deleted
                       organization's rows written where its delete had not arrived (default 5)
  --converge-limit S   fail if the regions are not identical S seconds after the faults end (default 30)
  --conflicts N        afterwards, N rounds of the conflict test on the same stack (default 0; --short 50)
  --report PATH        also write the figures as JSON to PATH
  --logs DIR           keep every host's log in DIR
  --regions N, --latency LIST, --redis-latency MS, --jitter MS   as for npm run harness
`;

interface Options {
  creates: number;
  durationS: number;
  clients: number;
  killEveryS: number;
  restartAfterS: number;
  partitionS: number;
  partitionMode: PartitionMode;
  isolateS: number;
  redisSignal: NodeJS.Signals | null;
  redisRestartAt: number;
  redisAof: boolean;
  postgresSignal: NodeJS.Signals | null;
  postgresRestartAt: number;
  stallS: number;
  allRegions: number;
  patches: number;
  deletes: number;
  orgs: number;
  orgDeletes: number;
  orgClients: number;
  tombstoneIntervalS: number;
  convergeLimitS: number;
  conflicts: number;
  ackSignatures: AckSignatures;
  report?: string;
}

/**
 * `--redis-restart-at` / `--postgres-restart-at`: a moment of the load, as a fraction of --duration. 1 is
 * refused: the load may stop right at --duration (its --creates done by then), and the schedule with it, so a
 * restart due then raced the schedule's stop and was skipped without a word when it lost; one that won hit
 * a load already draining, so its 503s and recovery tested nothing under load either. Firing it at stop()
 * instead would restart a database no client writes to, which is not what the flag promises. 0 is the start
 * of the load (the schedule starts with it), a restart like any other.
 */
function restartAt(flags: Flags, name: string, dflt: number): number {
  const v = flags.get(name);
  if (v === undefined) return dflt;
  const at = Number(v);
  if (v.trim() === '' || !Number.isFinite(at) || at < 0 || at >= 1) {
    throw new UsageError(`--${name} must be a fraction of --duration from 0 to below 1, got '${v}' (at 1 the restart would be due as the load ends, and the schedule ends with it)`);
  }
  return at;
}

function options(flags: Flags): Options {
  const short = flags.has('short');
  const redis = flags.get('redis-restart') ?? 'KILL';
  if (!['KILL', 'TERM', 'no'].includes(redis)) throw new UsageError('--redis-restart must be KILL, TERM or no');
  const pg = flags.get('postgres-restart') ?? 'INT';
  if (!['INT', 'QUIT', 'no'].includes(pg)) throw new UsageError('--postgres-restart must be INT, QUIT or no');
  const mode = flags.get('partition-mode') ?? 'wan';
  if (mode !== 'wan' && mode !== 'link') throw new UsageError('--partition-mode must be wan or link');
  return {
    creates: intFlag(flags, 'creates', short ? 600 : 10_000, 1),
    durationS: numFlag(flags, 'duration', short ? 30 : 60, 20, 86_400),
    clients: intFlag(flags, 'clients', 24, 1, 1000),
    killEveryS: numFlag(flags, 'kill-every', 4, 0, 3600),
    restartAfterS: numFlag(flags, 'restart-after', 1.5, 0, 3600),
    partitionS: numFlag(flags, 'partition', 10, 0, 3600),
    partitionMode: mode,
    isolateS: numFlag(flags, 'isolate', 8, 0, 3600),
    redisSignal: redis === 'no' ? null : (`SIG${redis}` as NodeJS.Signals),
    redisRestartAt: restartAt(flags, 'redis-restart-at', 0.6),
    redisAof: flags.get('redis-aof') !== 'no',
    postgresSignal: pg === 'no' ? null : (`SIG${pg}` as NodeJS.Signals),
    postgresRestartAt: restartAt(flags, 'postgres-restart-at', 0.45),
    stallS: numFlag(flags, 'stall', 1.5, 0, 60),
    allRegions: numFlag(flags, 'all-regions', 0.1, 0, 1),
    patches: numFlag(flags, 'patches', 0.15, 0, 1),
    deletes: numFlag(flags, 'deletes', 0.05, 0, 1),
    orgs: intFlag(flags, 'orgs', short ? 4 : 6, 0, 100),
    orgDeletes: numFlag(flags, 'org-deletes', 0.5, 0, 1),
    orgClients: intFlag(flags, 'org-clients', 3, 1, 100),
    tombstoneIntervalS: numFlag(flags, 'tombstone-interval', 5, 0.1, 300),
    convergeLimitS: numFlag(flags, 'converge-limit', 30, 1, 3600),
    conflicts: intFlag(flags, 'conflicts', short ? 50 : 0, 0),
    ackSignatures: ackSignaturesFlag(flags),
    report: flags.get('report'),
  };
}

interface Report {
  ok: boolean;
  failures: string[];
  options: Options;
  topology: { regions: { id: string; delayMs: number }[]; redisDelayMs: number };
  figures: LoadFigures & {
    acknowledged: number;
    lost: number;
    committedUnacknowledged: number;
    rowsPerRegion: Record<string, number>;
    convergeMs: number | null;
    faultSeconds: number;
    totalSeconds: number;
    kills: number;
    partitions: number;
    redisRestarts: number;
    postgresRestarts: number;
    /** Stalls of a region's database (with a kill -9 of the region) that ran. */
    stalls: number;
    /** Starts that a signal from outside the run ended (Stack.startService tried them again). */
    outsideKills: number;
    /** Acks and announcements read that did not verify, per region since its last start (sign and require). */
    acksUnverified: Record<string, number>;
    /** Per region: membership entries read that did not verify, and of those replayed (a false replay holds a region). */
    membersUnverified: Record<string, { unverified: number; replayed: number }>;
  };
  lost: LossCheck['lost'];
  undeleted: LossCheck['undeleted'];
  wrongLabel: LossCheck['wrongLabel'];
  events: { atMs: number; what: string }[];
  conflicts: ConflictFigures | null;
  /** The other organizations: their load, their deletes and their verdict. */
  orgs: OrgFigures;
}

function table(r: Report): string {
  const f = r.figures;
  const conv = f.convergeMs === null ? `not within ${r.options.convergeLimitS * 3} s` : `${(f.convergeMs / 1000).toFixed(1)} s`;
  const rows: [string, string | number][] = [
    ['writes tried', f.tried],
    ['answered (any HTTP status)', f.answered],
    ['acknowledged (201)', f.acked201],
    ['acknowledged (408 naming the credential)', f.acked408],
    ['408 without a credential', f.unanswered408],
    ['connection errors / timeouts', `${f.connectionErrors} / ${f.timeouts}`],
    ['5xx answers', f.server5xx],
    ['503 database unavailable (Retry-After)', f.databaseUnavailable],
    ['400 metadata fetch refused', f.metadataRefused],
    ['other answers', f.otherStatus],
    ['all_regions 201 missing in a region', f.allRegionsEarly],
    ['PATCH / DELETE sent (acknowledged)', `${f.patches} (${f.patchesAcked}) / ${f.deletes} (${f.deletesAcked})`],
    ['undeleted / wrong label', `${r.undeleted.length} / ${r.wrongLabel.length}`],
    ['LOST acknowledged writes', f.lost],
    ['committed, unacknowledged', f.committedUnacknowledged],
    ['time to converge', `${conv} (limit ${r.options.convergeLimitS} s)`],
    ['kills / partitions / Redis / Postgres restarts', `${f.kills} / ${f.partitions} / ${f.redisRestarts} / ${f.postgresRestarts}`],
    ['database stalls (each with a kill)', f.stalls],
    ...(f.outsideKills > 0 ? [['starts killed from outside the run (tried again)', f.outsideKills] as [string, number]] : []),
    ['acks unverified (since each start)', r.options.ackSignatures === 'off' ? 'not checked (off)' : Object.entries(f.acksUnverified).map(([region, n]) => `${region} ${n}`).join(', ')],
    ['member entries unverified (replayed)', r.options.ackSignatures === 'off' ? 'not checked (off)' : Object.entries(f.membersUnverified).map(([region, n]) => `${region} ${n.unverified} (${n.replayed})`).join(', ')],
    ['load and faults', `${f.faultSeconds.toFixed(1)} s`],
    ['whole run', `${f.totalSeconds.toFixed(1)} s`],
  ];
  const perRegion = Object.entries(f.perRegion).map(
    ([region, p]) => `  ${region.padEnd(16)} tried ${p.tried}, acknowledged ${p.acked}, errors ${p.errors}, 201 latency p50 ${p.p50Ms} ms p99 ${p.p99Ms} ms`,
  );
  return [
    ...rows.map(([k, v]) => `  ${k.padEnd(36)} ${v}`),
    ...perRegion,
    ...f.samples.map((s) => `  sample: ${s}`),
    ...r.lost.slice(0, 20).map((l) => `  lost: ${l.id} (acknowledged by ${l.ackedBy}) missing in ${l.missingIn.join(', ')}`),
    ...r.undeleted.slice(0, 10).map((u) => `  undeleted: ${u.id} live in ${u.liveIn.join(', ')}`),
    ...r.wrongLabel.slice(0, 10).map((w) => `  wrong label: ${w.id} expected one of ${JSON.stringify(w.expected)}, got ${JSON.stringify(w.got)}`),
    ...orgTable(r.orgs),
  ].join('\n');
}

/** The command line, checked whole before anything runs (a mistake is a UsageError). */
export function faultScheduleArgs(argv: readonly string[]): { flags: Flags; o: Options; topology: ReturnType<typeof regionSpecs> } {
  const { flags, positional } = parseFlags(
    argv,
    ['creates', 'duration', 'clients', 'kill-every', 'restart-after', 'partition', 'partition-mode', 'isolate', 'redis-restart', 'redis-restart-at', 'postgres-restart', 'postgres-restart-at', 'stall', 'redis-aof', 'all-regions', 'patches', 'deletes', 'orgs', 'org-deletes', 'org-clients', 'tombstone-interval', 'converge-limit', 'conflicts', 'report', 'logs', 'regions', 'latency', 'redis-latency', 'jitter', 'ack-signatures'],
    ['short', 'shared-redis'],
  );
  refuseArguments(positional);
  return { flags, o: options(flags), topology: regionSpecs(flags) };
}

async function main(): Promise<number> {
  // `-h` too (answerHelp): taken for a positional argument, it ran the whole schedule.
  answerHelp(process.argv.slice(2), USAGE.trimEnd());
  const { flags, o, topology } = faultScheduleArgs(process.argv.slice(2));
  requireRoot('npm run test:faults');
  const t0 = Date.now();
  const stack = await Stack.up({
    ...topology, jitterMs: numFlag(flags, 'jitter', 0), redisAppendOnly: o.redisAof, sharedRedis: flags.has('shared-redis'), ackSignatures: o.ackSignatures, tombstoneIntervalMs: Math.round(o.tombstoneIntervalS * 1000), logLevel: 'warn', logDir: flags.get('logs'), say: log,
  });
  const perRegion = Math.max(1, Math.ceil(o.clients / stack.regionIds.length));
  const clients = stack.regionIds.map((r) => new RegionClient(r, stack.regionUrl(r), perRegion));
  const first = clients[0];
  if (!first) throw new Error('no regions');
  const org = await createOrg(first, stack.adminToken, `faults-${stack.runId}`);
  // The other organizations' clients have connections of their own: sharing the main load's would queue them.
  const orgClients = stack.regionIds.map((r) => new RegionClient(r, stack.regionUrl(r), Math.max(1, Math.ceil((o.orgs * o.orgClients) / stack.regionIds.length)) + 1));
  log(`stack ${stack.runId} up in ${((Date.now() - t0) / 1000).toFixed(1)} s; load: >= ${o.creates} creates, >= ${o.durationS} s, ${o.clients} clients; ackSignatures ${o.ackSignatures}`);

  const durationMs = o.durationS * 1000;
  const dbUrls = Object.fromEntries(stack.regionIds.map((r) => [r, stack.dbUrl(r)]));
  const probe = new AllRegionsProbe(dbUrls);
  const load = new Load(
    {
      clients: o.clients, minCreates: o.creates, minDurationMs: durationMs, allRegionsShare: o.allRegions, allRegionsTimeoutS: 2, idpUrl: stack.idpUrl('okta.xml'), label: `faults-${stack.runId}`,
      missingAfterAllRegions: (id) => probe.missingIn(id),
      patchShare: o.patches,
      deleteShare: o.deletes,
    },
    clients,
    org,
  );
  const others = await OrgLoad.setup(orgClients, stack.adminToken, {
    orgs: o.orgs, deleteShare: o.orgDeletes, clientsPerOrg: o.orgClients, durationMs, label: `faults-${stack.runId}`, say: log,
    load: { allRegionsShare: o.allRegions, allRegionsTimeoutS: 2, idpUrl: stack.idpUrl('okta.xml'), missingAfterAllRegions: (id) => probe.missingIn(id), patchShare: o.patches, deleteShare: o.deletes },
  });
  const faults = new FaultSchedule(
    stack,
    {
      killEveryMs: o.killEveryS > 0 ? o.killEveryS * 1000 : Number.MAX_SAFE_INTEGER,
      restartAfterMs: o.restartAfterS * 1000,
      partitionAtMs: durationMs * 0.25,
      partitionMs: o.partitionS * 1000,
      partitionMode: o.partitionMode,
      isolateAtMs: durationMs * 0.75,
      isolateMs: o.isolateS * 1000,
      redisRestartAtMs: o.redisSignal ? durationMs * o.redisRestartAt : null,
      redisSignal: o.redisSignal ?? 'SIGKILL',
      postgresRestartAtMs: o.postgresSignal ? durationMs * o.postgresRestartAt : null,
      postgresSignal: o.postgresSignal ?? 'SIGINT',
      stallAtMs: [0.35, 0.65, 0.9].map((f) => durationMs * f),
      stallMs: o.stallS * 1000,
    },
    log,
  );
  const progress = setInterval(() => log(`load: ${load.tried} tried, ${load.acknowledged} acknowledged`), 10_000);
  const loadStart = Date.now();
  faults.start();
  others.start(loadStart);
  const { figures, acked, expected, databaseUnavailable } = await load.run();
  await others.stopLoads();
  clearInterval(progress);
  await probe.close();
  log(`all_regions 201s checked in every region's database: ${probe.checked} (a region not readable: ${probe.unknown} times)`);
  await faults.stop();
  const faultsEnded = Date.now();
  log(`faults over after ${((faultsEnded - loadStart) / 1000).toFixed(1)} s; waiting for the regions to converge`);

  const otherRun = await others.finish();
  const conv = await waitConverged(clients, stack.adminToken, faultsEnded, o.convergeLimitS * 3000);
  const loss = await checkAcknowledged(dbUrls, org.id, acked, expected);
  const orgVerdict = await verifyOrgs(clients, stack.adminToken, dbUrls, otherRun.orgs, faultsEnded, o.convergeLimitS * 3000);
  const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
  const signatures = await Promise.all(clients.map(async (c) => [c.region, await ackFigures(c, stack.adminToken)] as const));
  const acksUnverified = Object.fromEntries(signatures.map(([region, f]) => [region, sum(f.unverified)]));
  const membersUnverified = Object.fromEntries(signatures.map(([region, f]) => [region, { unverified: sum(f.member_entries.unverified), replayed: f.member_entries.unverified.replayed ?? 0 }]));
  let conflicts: ConflictFigures | null = null;
  if (o.conflicts > 0) {
    log(`conflict test: ${o.conflicts} rounds`);
    conflicts = await runConflicts(clients, org, stack.idpUrl('okta.xml'), o.conflicts, log);
  }

  const otherOrgs = orgFigures(otherRun, orgVerdict);
  const failures: string[] = [];
  if (loss.lost.length) failures.push(`${loss.lost.length} acknowledged writes are missing in some region`);
  if (loss.undeleted.length) failures.push(`${loss.undeleted.length} acknowledged DELETEs left the credential live in some region`);
  if (loss.wrongLabel.length) failures.push(`${loss.wrongLabel.length} credentials hold a label no acknowledged-or-later write gave them in some region`);
  if (figures.server5xx) failures.push(`${figures.server5xx} answers were 5xx`);
  // Nothing in the run writes old membership entries back: any replay counted is a genuine entry taken for one.
  const replayed = Object.values(membersUnverified).reduce((a, n) => a + n.replayed, 0);
  if (replayed) failures.push(`${replayed} membership entries were read as replayed (nothing replays them here: a genuine one refused)`);
  // A 503 saying the database is not there is expected from a region while its Postgres restarts, and
  // for a moment after (its pool opens connections again); from any other region, or at any other time, not.
  const unexcused = [...databaseUnavailable, ...otherRun.databaseUnavailable, ...otherRun.orgs.flatMap((x) => x.load.databaseUnavailable)].filter((u) => !faults.databaseOutages.some((o) => o.region === u.region && u.at >= o.from && u.at <= o.to + DATABASE_GRACE_MS));
  if (unexcused.length) failures.push(`${unexcused.length} answers were 503 "database unavailable" outside a restart of that region's Postgres`);
  if (figures.allRegionsEarly) failures.push(`${figures.allRegionsEarly} all_regions creates answered 201 were missing in some region's database right after the answer`);
  if (figures.otherStatus) failures.push(`${figures.otherStatus} answers had an unexpected status`);
  if (conv.ms === null || conv.ms > o.convergeLimitS * 1000) failures.push(`the regions did not converge within ${o.convergeLimitS} s`);
  failures.push(...orgFailures(otherOrgs, o.convergeLimitS));
  if (faults.failures.length) failures.push(...faults.failures.map((f) => `fault schedule: ${f}`));
  if (conflicts && !conflictsOk(conflicts)) failures.push('the conflict test failed');
  if (conv.ms === null) for (const [r, d] of Object.entries(conv.digests)) process.stdout.write(`  last digest of ${r}: ${JSON.stringify(d)}\n`);

  const report: Report = {
    ok: failures.length === 0,
    failures,
    options: o,
    topology,
    figures: {
      ...figures,
      acknowledged: acked.size,
      lost: loss.lost.length,
      committedUnacknowledged: loss.committedUnacknowledged,
      rowsPerRegion: loss.rowsPerRegion,
      convergeMs: conv.ms,
      faultSeconds: (faultsEnded - loadStart) / 1000,
      totalSeconds: (Date.now() - t0) / 1000,
      kills: faults.kills,
      partitions: faults.partitions,
      redisRestarts: faults.redisRestarts,
      postgresRestarts: faults.postgresRestarts,
      stalls: faults.stalls,
      outsideKills: stack.outsideKills,
      acksUnverified,
      membersUnverified,
    },
    lost: loss.lost,
    undeleted: loss.undeleted,
    wrongLabel: loss.wrongLabel,
    events: faults.events,
    conflicts,
    orgs: otherOrgs,
  };
  process.stdout.write(`\nfault schedule, run ${stack.runId}: ${stack.regionIds.length} regions, ${o.clients} clients, ackSignatures ${o.ackSignatures}\n${table(report)}\n`);
  if (conflicts) process.stdout.write(conflictTable(conflicts) + '\n');
  process.stdout.write(report.ok ? 'RESULT: PASS\n' : `RESULT: FAIL\n${failures.map((f) => `  - ${f}`).join('\n')}\n`);
  if (o.report) fs.writeFileSync(o.report, JSON.stringify(report, null, 2) + '\n');
  await Promise.all([...clients, ...orgClients].map((c) => c.close()));
  return report.ok ? 0 : 1;
}

if (require.main === module) runMain(main, USAGE);
