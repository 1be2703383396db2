/** `npm run bench` refuses a bad command line before it starts anything, and `--help` prints the usage. */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { USAGE } from '../../bench/options';
import { PROJECT_ROOT } from '../../src/paths';

const RUN = path.join(PROJECT_ROOT, 'dist/bench/run.js');
// Long enough for node to start on a loaded machine; a run that went on to start a deployment is killed and fails.
const bench = (...args: string[]) => spawnSync(process.execPath, [RUN, ...args], { encoding: 'utf8', timeout: 30_000 });

test('--help prints the usage and exits 0', () => {
  const res = bench('--help');
  expect(res.status).toBe(0);
  expect(res.stdout).toBe(USAGE);
});

test('an unknown option exits 2 with what is wrong and the usage, and starts nothing', () => {
  const res = bench('throughput', '--secs', '4');
  expect(res.status).toBe(2);
  expect(res.stderr).toContain("npm run bench: Unknown option '--secs'");
  expect(res.stderr).toContain(USAGE);
  expect(res.stdout).toBe('');
});

test('an option of another part exits 2', () => {
  const res = bench('overload', '--ops', 'read');
  expect(res.status).toBe(2);
  expect(res.stderr).toContain('--ops does not apply to the overload part');
});
