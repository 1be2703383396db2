/**
 * The operator commands answer --help with their usage on stdout and exit 0, before reading any config; a
 * config they cannot read is a configuration error (exit 2).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/paths';

test.each([
  ['cluster', /^usage: npm run cluster \[-- <region id> \.\.\.\]/],
  ['reseed', /^usage: npm run reseed -- --from <peer region> --to <region to re-seed>/],
  ['members', /^usage: npm run members -- list \| activate <region> \| remove <region>/],
])('npm run %s -- --help prints its usage and exits 0', (script, usage) => {
  for (const flag of ['--help', '-h']) {
    // A config that does not exist: --help must not need one.
    const res = spawnSync(process.execPath, [path.join(PROJECT_ROOT, `dist/scripts/${script}.js`), flag], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, REGIONS_CONFIG: '/nonexistent/regions.json' },
    });
    expect({ status: res.status, stderr: res.stderr }).toEqual({ status: 0, stderr: '' });
    expect(res.stdout).toMatch(usage);
  }
});

test.each([
  ['reseed', ['--from', 'us-iowa', '--to', 'europe-belgium']],
  ['members', ['list']],
])('npm run %s with a config it cannot read exits 2, as a configuration error of the cluster or a region does', (script, args) => {
  const res = spawnSync(process.execPath, [path.join(PROJECT_ROOT, `dist/scripts/${script}.js`), ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, REGIONS_CONFIG: '/nonexistent/regions.json' },
  });
  expect({ status: res.status, stdout: res.stdout }).toEqual({ status: 2, stdout: '' });
  expect(res.stderr).toMatch(new RegExp(`^${script} failed: .*/nonexistent/regions\\.json`));
});
