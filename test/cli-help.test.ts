/** The operator commands answer --help with their usage on stdout and exit 0, before reading any config. */
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
