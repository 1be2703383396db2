/**
 * The throughput part's arms (`--arms`): the states of the deployment the serving region's slices run in,
 * each a block of the run (its warm-up and interleaved slices against the baseline, as without arms), in the
 * order given, so that one run prices them against each other on the same minutes of a shared host:
 * - `paused`: the two other regions paused (SIGSTOP), as every throughput run does: no ack arrives, and the
 *   serving region's relay pages through a growing backlog of unconfirmed rows every 2 s;
 * - `no-confirm`: the same, with the serving region's confirm rounds skipped (bench/confirm-switch.ts);
 * - `running`: the other regions running, caught up, and the serving region's unconfirmed rows down to less
 *   than one confirm page before the block starts: the healthy steady state, where acks arrive.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RegionProcess } from '../src/cluster/region-process';
import { PROJECT_ROOT } from '../src/paths';

export const ARMS = ['paused', 'no-confirm', 'running'] as const;
export type Arm = (typeof ARMS)[number];

/** Rows the relay reads per confirm round (relay-confirm.ts CONFIRM_PAGE_ROWS): `running` waits below it. */
const CONFIRM_PAGE_ROWS = 2000;

export interface ArmDeps {
  /** The regions that do not serve. */
  others: RegionProcess[];
  /** Every other region applied what the serving region wrote. */
  caughtUp(): Promise<boolean>;
  /** The serving region's published, unconfirmed outbox rows. */
  unconfirmed(): Promise<number>;
  until(what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs?: number): Promise<void>;
}

/**
 * Sets the environment the regions are started with when `arms` needs the switch (before they start): the
 * preload, and the file whose presence switches the confirm rounds off. Returns that file's path.
 */
export function prepareArms(arms: readonly Arm[]): string | null {
  if (!arms.includes('no-confirm')) return null;
  const flag = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-arms-')), 'confirm-off');
  const preload = `--require ${path.join(PROJECT_ROOT, 'dist', 'bench', 'confirm-switch.js')}`;
  process.env.REGION_NODE_ARGS = [process.env.REGION_NODE_ARGS, preload].filter(Boolean).join(' ');
  process.env.BENCH_CONFIRM_OFF = flag;
  return flag;
}

/** Puts the deployment in `arm`'s state (see the header). */
export async function enterArm(arm: Arm, flag: string | null, deps: ArmDeps): Promise<void> {
  if (flag) {
    if (arm === 'no-confirm') fs.writeFileSync(flag, '');
    else fs.rmSync(flag, { force: true });
  }
  if (arm !== 'running') {
    for (const p of deps.others) p.pause();
    return;
  }
  for (const p of deps.others) p.resume();
  await deps.until('the other regions to catch up', () => deps.caughtUp(), 600_000, 1000);
  await deps.until('the serving region to confirm its backlog', async () => (await deps.unconfirmed()) < CONFIRM_PAGE_ROWS, 600_000, 1000);
}

/** Removes the switch's file and its directory. */
export function cleanupArms(flag: string | null): void {
  if (flag) fs.rmSync(path.dirname(flag), { recursive: true, force: true });
}
