/**
 * The conflict test: one credential, N rounds; in each round every region PATCHes it at the same moment
 * with a different label and email claim, then we wait until every region returns the same GET result and
 * check that result is one of this round's writes, whole (label and claim from the same write) — last
 * writer wins per row, so no region may keep a loser or an older round's state.
 *
 * Standalone: node dist/scripts/harness/conflicts.js [--rounds N] [--report PATH] [latency flags]
 * (starts its own stack). The fault schedule runs it too with --conflicts N.
 */
import fs from 'node:fs';
import { regionSpecs } from './cli';
import { CREDENTIALS_PATH, createOrg, orgHeaders, percentile, RegionClient, resultId, type Org } from './client';
import { answerHelp } from '../usage';
import { ackSignaturesFlag, intFlag, log, numFlag, parseFlags, refuseArguments, requireRoot, runMain, sleep, type Flags } from './common';
import { Stack, type StackOptions } from './stack';

export interface ConflictFigures {
  rounds: number;
  agreed: number;
  /** Rounds whose regions did not agree within the limit. */
  disagreed: number;
  /** Rounds that agreed on a state that was not one of that round's writes. */
  wrongState: number;
  /** PATCH answers other than 204 (or no answer). */
  failedPatches: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: string[];
}

interface View {
  label?: unknown;
  email_claims?: unknown;
}

const AGREE_LIMIT_MS = 30_000;

export async function runConflicts(clients: readonly RegionClient[], org: Org, idpUrl: string, rounds: number, say: (m: string) => void): Promise<ConflictFigures> {
  const first = clients[0];
  if (!first) throw new Error('no regions');
  const created = await first.call('POST', CREDENTIALS_PATH, {
    headers: orgHeaders(org, { 'SlashID-Required-Consistency': 'all_regions' }),
    body: { idp_metadata_url: idpUrl, label: 'conflict' },
  });
  const id = resultId(created.body);
  if (created.status !== 201 || !id) throw new Error(`creating the conflict credential: ${created.status} ${JSON.stringify(created.body)}`);
  const f: ConflictFigures = { rounds, agreed: 0, disagreed: 0, wrongState: 0, failedPatches: 0, meanMs: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, samples: [] };
  const times: number[] = [];
  const note = (s: string) => {
    if (f.samples.length < 10) f.samples.push(s);
  };
  for (let round = 0; round < rounds; round++) {
    const written = clients.map((c) => ({ label: `round ${round} from ${c.region}`, email_claims: [`claim-${round}-${c.region}`] }));
    const answers = await Promise.all(
      clients.map((c, i) => c.call('PATCH', `${CREDENTIALS_PATH}/${id}`, { headers: orgHeaders(org), body: written[i] }).catch((err: Error) => ({ status: 0, body: err.message }))),
    );
    answers.forEach((a, i) => {
      if (a.status !== 204) {
        f.failedPatches++;
        note(`round ${round}: PATCH in ${clients[i]?.region} answered ${a.status} ${JSON.stringify(a.body)}`);
      }
    });
    const t0 = Date.now();
    let states: string[] = [];
    let agreedOn: View | null = null;
    while (Date.now() - t0 < AGREE_LIMIT_MS) {
      const got = await Promise.all(clients.map((c) => c.call('GET', `${CREDENTIALS_PATH}/${id}`, { headers: orgHeaders(org) }).catch(() => null)));
      states = got.map((g) => (g?.status === 200 ? JSON.stringify((g.body as { result?: unknown }).result) : `status ${g?.status ?? 'none'}`));
      if (got.every((g) => g?.status === 200) && new Set(states).size === 1) {
        agreedOn = (got[0]?.body as { result?: View }).result ?? null;
        break;
      }
      await sleep(5);
    }
    if (!agreedOn) {
      f.disagreed++;
      note(`round ${round}: no agreement within ${AGREE_LIMIT_MS} ms: ${states.join(' | ')}`);
      continue;
    }
    f.agreed++;
    times.push(Date.now() - t0);
    const state = agreedOn;
    if (!written.some((w) => w.label === state.label && JSON.stringify(w.email_claims) === JSON.stringify(state.email_claims))) {
      f.wrongState++;
      note(`round ${round}: regions agree on a state nobody wrote this round: ${JSON.stringify(state)}`);
    }
    if ((round + 1) % 100 === 0) say(`conflict rounds: ${round + 1}/${rounds}`);
  }
  times.sort((a, b) => a - b);
  f.meanMs = times.length ? Math.round(times.reduce((a, b) => a + b, 0) / times.length) : 0;
  f.p50Ms = percentile(times, 50);
  f.p99Ms = percentile(times, 99);
  f.maxMs = times[times.length - 1] ?? 0;
  return f;
}

export function conflictsOk(f: ConflictFigures): boolean {
  return f.disagreed === 0 && f.wrongState === 0 && f.failedPatches === 0;
}

export function conflictTable(f: ConflictFigures): string {
  return [
    `  conflict rounds                 ${f.rounds}`,
    `  agreed / disagreed              ${f.agreed} / ${f.disagreed}`,
    `  agreed on a wrong state         ${f.wrongState}`,
    `  failed PATCHes                  ${f.failedPatches}`,
    `  time to agree mean / p50 / p99  ${f.meanMs} / ${f.p50Ms} / ${f.p99Ms} ms (max ${f.maxMs})`,
    ...f.samples.map((s) => `    ${s}`),
  ].join('\n');
}

const USAGE = `usage: npm run test:conflicts -- [--rounds N] [--report PATH] [--regions N] [--latency LIST] [--jitter MS]
       [--shared-redis [--redis-latency MS]] [--ack-signatures off|sign|require] [--logs DIR]
  (default 1000 rounds; the stack options as for npm run harness)\n`;

/** The command line, checked whole before the root check and before anything runs. */
export function conflictArgs(argv: readonly string[]): { flags: Flags; rounds: number; stack: Omit<StackOptions, 'say'> } {
  const { flags, positional } = parseFlags(argv, ['rounds', 'report', 'regions', 'latency', 'redis-latency', 'jitter', 'logs', 'ack-signatures'], ['shared-redis']);
  refuseArguments(positional);
  const rounds = intFlag(flags, 'rounds', 1000, 1);
  const { regions, redisDelayMs } = regionSpecs(flags);
  return {
    flags,
    rounds,
    stack: { regions, redisDelayMs, jitterMs: numFlag(flags, 'jitter', 0), redisAppendOnly: false, sharedRedis: flags.has('shared-redis'), ackSignatures: ackSignaturesFlag(flags), logLevel: 'warn', logDir: flags.get('logs') },
  };
}

async function main(): Promise<number> {
  answerHelp(process.argv.slice(2), USAGE.trimEnd());
  const { flags, rounds, stack: options } = conflictArgs(process.argv.slice(2));
  const { regions, redisDelayMs } = options;
  requireRoot('npm run test:conflicts');
  const stack = await Stack.up({ ...options, say: log });
  const clients = stack.regionIds.map((r) => new RegionClient(r, stack.regionUrl(r), 2));
  const first = clients[0];
  if (!first) throw new Error('no regions');
  const org = await createOrg(first, stack.adminToken, 'conflicts');
  const started = Date.now();
  const f = await runConflicts(clients, org, stack.idpUrl('okta.xml'), rounds, log);
  process.stdout.write(`conflict test (run ${stack.runId}, ${regions.map((r) => `${r.id} ${r.delayMs} ms`).join(', ')}), ${((Date.now() - started) / 1000).toFixed(0)} s\n${conflictTable(f)}\n`);
  const report = flags.get('report');
  if (report) fs.writeFileSync(report, JSON.stringify({ regions, redisDelayMs, conflicts: f, ok: conflictsOk(f) }, null, 2) + '\n');
  await Promise.all(clients.map((c) => c.close()));
  return conflictsOk(f) ? 0 : 1;
}

if (require.main === module) runMain(main, USAGE);
