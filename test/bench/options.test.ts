/** `npm run bench`'s command line (bench/options.ts): defaults, parts, and refusals before anything starts. */
import { BenchUsageError, parseBenchArgs, USAGE } from '../../bench/options';

const refusal = (args: string[]) => {
  try {
    parseBenchArgs(args);
  } catch (err) {
    if (err instanceof BenchUsageError) return err.message;
    throw err;
  }
  throw new Error(`${args.join(' ')} was accepted`);
};

describe('npm run bench options', () => {
  test('no argument is the full run with the documented defaults and the waiters', () => {
    expect(parseBenchArgs([])).toEqual({
      part: 'full',
      waiters: true,
      throughput: { seconds: 8, rounds: 4, warmup: 16, n: 200, gap: 20, backlog: 100_000, stored: 0, packs: true, ackSignatures: 'require', ops: ['read', 'patch', 'create'], arms: ['paused'], only: null },
    });
  });

  test('a part runs alone with its options', () => {
    expect(parseBenchArgs(['throughput', '--ops', 'patch,create', '--seconds', '4', '--rounds', '2', '--warmup', '0'])).toMatchObject({
      part: 'throughput',
      throughput: { ops: ['patch', 'create'], seconds: 4, rounds: 2, warmup: 0, only: 'throughput' },
    });
    expect(parseBenchArgs(['latency', '--gap', '0', '--n', '50'])).toMatchObject({ part: 'latency', throughput: { gap: 0, n: 50, only: 'latency' } });
    expect(parseBenchArgs(['--backlog', '2000', 'apply', '--packs', 'off'])).toMatchObject({ part: 'apply', throughput: { backlog: 2000, packs: false, only: 'apply' } });
    expect(parseBenchArgs(['--waiters', 'off'])).toMatchObject({ part: 'full', waiters: false });
    expect(parseBenchArgs(['throughput', '--arms', 'paused,no-confirm,running,running'])).toMatchObject({ part: 'throughput', throughput: { arms: ['paused', 'no-confirm', 'running', 'running'] } });
    expect(parseBenchArgs(['apply', '--ack-signatures', 'off'])).toMatchObject({ part: 'apply', throughput: { ackSignatures: 'off' } });
    expect(parseBenchArgs(['overload', '--ack-signatures', 'sign'])).toMatchObject({ part: 'overload', overload: { ackSignatures: 'sign' } });
    expect(parseBenchArgs(['stall', '--rounds', '5'])).toEqual({ part: 'stall', rounds: 5 });
    expect(parseBenchArgs(['overload', '--n', '10000', '--writes-queue', '10000', '--writes-queue-wait', '120000', '--resume-after', '30'])).toEqual({
      part: 'overload',
      overload: { n: 10_000, timeout: 120, credentials: 64, writesQueue: 10_000, writesQueueWait: 120_000, resumeAfter: 30, ackSignatures: 'require' },
    });
  });

  test('--help and -h ask for the usage, which names every part and option', () => {
    expect(parseBenchArgs(['--help'])).toEqual({ part: 'help' });
    expect(parseBenchArgs(['overload', '-h'])).toEqual({ part: 'help' });
    for (const word of ['throughput', 'latency', 'apply', 'overload', 'stall', '--seconds', '--rounds', '--warmup', '--ops', '--n', '--gap', '--backlog', '--stored', '--packs', '--waiters', '--timeout', '--resume-after', '--credentials', '--writes-queue', '--writes-queue-wait', '--ack-signatures', '--arms', 'no-confirm']) {
      expect(USAGE).toContain(word);
    }
  });

  test.each([
    [['--secs', '4'], /Unknown option '--secs'/],
    [['thruput'], /unknown part 'thruput'/],
    [['latency', 'apply'], /one part at most/],
    [['--seconds'], /--seconds/],
    [['--seconds', 'four'], /--seconds takes a whole number of at least 1 \(got 'four'\)/],
    [['--rounds', '0'], /--rounds takes a whole number of at least 1/],
    [['--gap=-5'], /--gap takes a whole number of at least 0 \(got '-5'\)/],
    [['--backlog', '1.5'], /--backlog takes a whole number/],
    [['--ops', 'read,delete'], /--ops takes a comma-separated list of read, patch, create \(got 'read,delete'\)/],
    [['--packs', 'no'], /--packs takes on or off/],
    [['--ack-signatures', 'on'], /--ack-signatures takes off, sign, require \(got 'on'\)/],
    [['stall', '--ack-signatures', 'off'], /--ack-signatures does not apply to the stall part/],
    [['overload', '--seconds', '4'], /--seconds does not apply to the overload part/],
    [['stall', '--n', '4', '--ops', 'read'], /--n, --ops do not apply to the stall part/],
    [['--timeout', '30'], /--timeout does not apply to the full run/],
    [['throughput', '--waiters', 'off'], /--waiters does not apply to the throughput part/],
    [['throughput', '--arms', 'paused,stopped'], /--arms takes a comma-separated list of paused, no-confirm, running \(got 'paused,stopped'\)/],
    [['--arms', 'running'], /--arms does not apply to the full run/],
    [['latency', '--arms', 'running'], /--arms does not apply to the latency part/],
  ])('refuses %j: %s', (args, message) => {
    expect(refusal(args)).toMatch(message);
  });
});
