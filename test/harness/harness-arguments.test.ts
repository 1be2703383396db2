/**
 * The harness commands (npm run harness, test:faults, test:conflicts) check their whole command line before
 * the root check and before anything runs: a word that is not an option, and a Redis delay where there is no
 * Redis host to delay, are usage errors (exit 64). Both were ignored: `npm run test:faults -- short` ran the
 * full schedule, `harness -- bench -h` the benchmark, and `--latency redis=5` left every delay as it was. So
 * is a Redis or Postgres restart at 1 of --duration, which was due as the schedule stopped and was skipped.
 *
 * Run as root (CI), the commands run as an unprivileged user when it can read them: were a mistake to go
 * unnoticed again, the command stops at the root check instead of building a stack of network namespaces.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';

const SCRIPTS = { harness: 'cli', 'test:faults': 'fault-schedule', 'test:conflicts': 'conflicts' } as const;
const entry = (command: keyof typeof SCRIPTS) => path.join(PROJECT_ROOT, 'dist', 'scripts', 'harness', `${SCRIPTS[command]}.js`);
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** Runs the commands as nobody when this runs as root and nobody can load them (the module alone, not run). */
function unprivilegedPrefix(): string[] | null {
  if (process.getuid?.() !== 0) return [];
  const probe = spawnSync(NOBODY[0] ?? '', [...NOBODY.slice(1), process.execPath, '-e', 'require(process.argv[1])', entry('harness')], { timeout: 30_000 });
  return probe.status === 0 ? NOBODY : null;
}
const asNobody = unprivilegedPrefix();
/** Whether the commands run without root. */
const unprivileged = asNobody !== null;
const prefix = asNobody ?? [];

function run(command: keyof typeof SCRIPTS, ...args: string[]) {
  const [cmd = process.execPath, ...rest] = [...prefix, process.execPath, entry(command), ...args];
  const res = spawnSync(cmd, rest, { encoding: 'utf8', timeout: 30_000 });
  return { status: res.status, stdout: res.stdout, firstLine: res.stderr.split('\n')[0] };
}

test.each<[keyof typeof SCRIPTS, string[], string]>([
  ['test:faults', ['short'], "unexpected argument 'short': options start with --"],
  ['test:faults', ['--short', '-h2'], "unexpected argument '-h2': options start with --"],
  ['test:conflicts', ['100'], "unexpected argument '100': options start with --"],
  ['harness', ['up', 'now'], "unexpected argument 'now': options start with --"],
  ['harness', ['bench', '30'], "unexpected argument '30': options start with --"],
  ['harness', ['cleanup', '--regions', '2'], 'cleanup takes no options'],
])('%s %j is refused as a usage error (exit 64) before anything runs', (command, args, message) => {
  expect(run(command, ...args)).toMatchObject({ status: 64, firstLine: message });
});

// A restart at 1 of --duration was due as the load ends, when the schedule stops with it: skipped without a word.
test.each([['--redis-restart-at', '1'], ['--postgres-restart-at', '1.0'], ['--redis-restart-at', '1.5'], ['--postgres-restart-at', '-0.1']])(
  'test:faults %s %s is refused: a restart is at a fraction of --duration from 0 to below 1',
  (flag, value) => {
    expect(run('test:faults', '--short', flag, value)).toMatchObject({
      status: 64,
      firstLine: `${flag} must be a fraction of --duration from 0 to below 1, got '${value}' (at 1 the restart would be due as the load ends, and the schedule ends with it)`,
    });
  },
);

test('harness -- bench -h prints the benchmark usage and exits 0', () => {
  const res = run('harness', 'bench', '-h');
  expect({ status: res.status, firstLine: res.firstLine }).toEqual({ status: 0, firstLine: '' });
  expect(res.stdout).toMatch(/^usage: npm run harness -- bench \[options\]\n/);
});

test.each<[keyof typeof SCRIPTS, string[], string]>([
  ['harness', ['up', '--latency', 'asia-japan=120,redis=5'], '--latency redis=5'],
  ['harness', ['--redis-latency', '5'], '--redis-latency'],
  ['test:faults', ['--short', '--latency', 'redis=5'], '--latency redis=5'],
  ['test:conflicts', ['--redis-latency', '5'], '--redis-latency'],
])('%s %j: a Redis delay without --shared-redis, where no Redis host exists, is refused', (command, args, what) => {
  expect(run(command, ...args)).toMatchObject({
    status: 64,
    firstLine: `${what}: there is no Redis host without --shared-redis (each region's Redis runs on its region's host, with that host's delay: set it with --latency REGION=MS)`,
  });
});

// Accepted options go on to the root check; as root they would start a stack, so only without it.
(unprivileged ? test.each : test.skip.each)<[keyof typeof SCRIPTS, string[]]>([
  ['harness', ['up', '--shared-redis', '--latency', 'asia-japan=120,redis=5']],
  ['test:faults', ['--short', '--shared-redis', '--redis-latency', '5']],
  ['test:faults', ['--short', '--redis-restart-at', '0', '--postgres-restart-at', '0.99']],
  ['test:conflicts', ['--rounds', '10', '--shared-redis', '--redis-latency', '5']],
])('%s %j is accepted: without root it stops at the root check (exit 2)', (command, args) => {
  const res = run(command, ...args);
  expect(res).toMatchObject({ status: 2 });
  expect(res.firstLine).toMatch(/ needs root: /);
});
