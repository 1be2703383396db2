/**
 * The README's API walkthrough runs as written. Its ```sh walkthrough blocks run, in order, in one bash process
 * (set -euo pipefail) against a fresh three-region cluster and the IdP fixture server, with the variables the
 * README reads (ADMIN_TOKEN, US, EU, ASIA, IDP). A step fails the test when its command fails (the README's
 * curls use --fail-with-body where a success is expected, jq -e where a value is) or when what it prints does
 * not match the README: every `# …` comment right after a command is an expected output line, `…` standing
 * for anything, and those lines must appear in the output in order.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ConfigFile } from '../../src/config-schema';
import { PROJECT_ROOT } from '../../src/paths';
import { ADMIN_TOKEN } from '../support/env';
import { call, startCluster, type Cluster } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';

const REGIONS = ['us-iowa', 'europe-belgium', 'asia-japan'];
const SCRIPT_TIMEOUT_MS = 150_000;

export interface Walkthrough {
  script: string;
  /** Expected output lines, in order, as regexes. */
  expected: { text: string; re: RegExp }[];
}

const normalize = (line: string) => line.replace(/\s+/g, ' ').trim();

/**
 * The walkthrough blocks of a README and the output lines they document. `urls` maps the README's default
 * addresses to the ones of this run, so that an expected line that shows one still matches.
 */
export function extractWalkthrough(readme: string, urls: Record<string, string> = {}): Walkthrough {
  const blocks = [...readme.matchAll(/^```sh walkthrough\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');
  const expected: Walkthrough['expected'] = [];
  for (const block of blocks) {
    let afterCommand = false;
    for (const line of block.split('\n')) {
      if (line.trim() === '') afterCommand = false;
      else if (line.startsWith('#')) {
        if (afterCommand) {
          const text = Object.entries(urls).reduce((t, [from, to]) => t.split(from).join(to), normalize(line.slice(1)));
          const pattern = text.split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*');
          expected.push({ text, re: new RegExp(`^${pattern}$`) });
        }
      } else afterCommand = true;
    }
  }
  return { script: blocks.join('\n'), expected };
}

/** The first expected line that is not in `output` (in order), or null when all are. */
export function firstMissing(expected: Walkthrough['expected'], output: string): string | null {
  const lines = output.split('\n').map(normalize);
  let at = 0;
  for (const e of expected) {
    const i = lines.findIndex((l, n) => n >= at && e.re.test(l));
    if (i < 0) return e.text;
    at = i + 1;
  }
  return null;
}

function requireTool(cmd: string, args: string[], what: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' });
  } catch {
    throw new Error(`${cmd} is not installed, and the README walkthrough needs it (${what})`);
  }
}

function runBash(script: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script], { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${SCRIPT_TIMEOUT_MS} ms)`;
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    }, SCRIPT_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('README walkthrough', () => {
  let idp: IdpServer;
  let cluster: Cluster;
  const readme = fs.readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');

  beforeAll(async () => {
    requireTool('jq', ['--version'], 'apt-get install jq');
    const curl = requireTool('curl', ['--version'], 'apt-get install curl');
    const [major = 0, minor = 0] = (/^curl (\d+)\.(\d+)/.exec(curl) ?? []).slice(1).map(Number);
    if (major < 7 || (major === 7 && minor < 84)) throw new Error(`the README walkthrough needs curl >= 7.84 (--fail-with-body, %header{}), found ${curl.split('\n')[0]}`);
    idp = await startIdpServer();
    // Acks signed as the shipped regions.config.json says, which the walkthrough's `npm run cluster` runs.
    const { ackSignatures } = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'regions.config.json'), 'utf8')) as ConfigFile;
    cluster = await startCluster('walkthrough', REGIONS, { extra: { metadataAllowedHosts: [idp.hostPort], ackSignatures } });
  }, 120_000);

  afterAll(async () => {
    // The walkthrough pauses asia-japan; if it failed in between, the region must run again to stop.
    cluster?.proc('asia-japan').resume();
    await cluster?.stop();
    await idp?.close();
  });

  it('finds the walkthrough blocks and the outputs they document', () => {
    const walkthrough = extractWalkthrough(readme);
    expect(walkthrough.script).toContain('ADMIN_TOKEN');
    expect(walkthrough.expected.length).toBeGreaterThan(20);
  });

  it('runs every block in order against a fresh cluster, and each step answers as the README shows', async () => {
    const env = {
      ADMIN_TOKEN,
      US: cluster.url('us-iowa'),
      EU: cluster.url('europe-belgium'),
      ASIA: cluster.url('asia-japan'),
      IDP: `http://${idp.hostPort}`,
    };
    const walkthrough = extractWalkthrough(readme, {
      'http://127.0.0.1:8081': env.US,
      'http://127.0.0.1:8082': env.EU,
      'http://127.0.0.1:8083': env.ASIA,
      'http://127.0.0.1:9400': env.IDP,
    });
    const vars = ['ORG', 'SUB', 'API_KEY', 'ID', 'CHANGE_ID', 'IDEM_KEY', 'TOKEN'];
    const script = [
      'set -euo pipefail',
      // On a failure, say where, and show the captured answer (OUT holds the body of most requests).
      `trap 'echo "walkthrough failed at: $BASH_COMMAND" >&2; [ -z "\${OUT:-}" ] || echo "last OUT: $OUT" >&2' ERR`,
      walkthrough.script,
      `jq -nc ${vars.map((v) => `--arg ${v} "$${v}"`).join(' ')} '$ARGS.named' | sed 's/^/WALKTHROUGH-VARS /'`,
    ].join('\n');
    const run = await runBash(script, env);
    const report = `exit code ${run.code}\n--- stdout (last 40 lines)\n${run.stdout.split('\n').slice(-40).join('\n')}\n--- stderr\n${run.stderr.slice(-3000)}`;
    if (run.code !== 0) throw new Error(`a walkthrough step failed: ${report}`);
    const missing = firstMissing(walkthrough.expected, run.stdout);
    if (missing !== null) throw new Error(`the walkthrough did not print, in order, the README's output line\n  ${missing}\n${report}`);

    const line = run.stdout.split('\n').find((l) => l.startsWith('WALKTHROUGH-VARS '));
    const v = JSON.parse(line?.slice('WALKTHROUGH-VARS '.length) ?? '{}') as Record<string, string>;
    for (const name of ['ORG', 'SUB', 'ID', 'CHANGE_ID', 'IDEM_KEY']) expect([name, v[name]]).toEqual([name, expect.stringMatching(UUID)]);
    expect(v.API_KEY).toMatch(/^sidk_[^.]+\.[^.]+$/);
    expect(v.TOKEN).toMatch(/^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);
    // The variables name real things: the last credential is in every region under the rotated key.
    for (const region of REGIONS) {
      const res = await call(cluster.url(region), 'GET', `/organizations/sso/saml/provider-credentials/${v.ID}`, {
        headers: { 'SlashID-OrgID': v.ORG ?? '', 'SlashID-API-Key': v.API_KEY ?? '' },
      });
      expect([region, res.status, res.body?.result?.label]).toEqual([region, 200, 'Google']);
    }
  }, SCRIPT_TIMEOUT_MS + 10_000);
});
