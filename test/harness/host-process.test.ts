/**
 * The harness's host process tells a kill from outside the run (a signal it did not send) from its own kills,
 * and a start that such a kill ends is tried once more, while any other failed start still fails. Needs root
 * (a network namespace), as the fault schedule does; CI runs as root.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { HostProcess, startAgainIfKilledFromOutside } from '../../scripts/harness/host-process';

const asRoot = process.getuid?.() === 0;
const ns = `samlt${crypto.randomBytes(3).toString('hex')}`;
const procs: HostProcess[] = [];

function proc(command: string, args: string[]): HostProcess {
  const p = new HostProcess({ name: 'probe', ns, command, args });
  procs.push(p);
  return p;
}

async function exited(p: HostProcess): Promise<void> {
  for (let i = 0; i < 200 && p.running; i++) await new Promise((r) => setTimeout(r, 25));
  expect(p.running).toBe(false);
}

/** A start as the harness's are: start the process, fail if it exits before it "serves" (here: 300 ms up). */
async function startAndWait(p: HostProcess, meanwhile?: () => void): Promise<void> {
  p.start();
  meanwhile?.();
  for (let waited = 0; waited < 300; waited += 25) {
    await new Promise((r) => setTimeout(r, 25));
    if (!p.running) throw new Error(`${p.name} exited during start-up`);
  }
}

(asRoot ? describe : describe.skip)('harness host process', () => {
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns]);
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    execFileSync('ip', ['netns', 'del', ns]);
  });

  test('a SIGKILL from outside is told apart from the harness stopping the process', async () => {
    const p = proc('sleep', ['30']);
    p.start();
    process.kill(p.pid!, 'SIGKILL');
    await exited(p);
    expect(p.killedFromOutside).toBe('SIGKILL');
    expect(p.lastLines(1)[0]).toBe('[exited: code null, signal SIGKILL] (not sent by the harness)');

    p.start();
    expect(p.killedFromOutside).toBeNull();
    await p.stop('SIGKILL');
    expect(p.killedFromOutside).toBeNull();
    expect(p.lastLines(1)[0]).toBe('[exited: code null, signal SIGKILL]');

    p.start();
    await p.stop('SIGTERM');
    expect(p.killedFromOutside).toBeNull();
  });

  test('a start killed from outside is tried once more; a second such kill, or an exit of its own, fails', async () => {
    const p = proc('sleep', ['30']);
    const said: string[] = [];
    let attempts = 0;
    await startAgainIfKilledFromOutside(
      p,
      () => startAndWait(p, () => attempts++ === 0 && process.kill(p.pid!, 'SIGKILL')),
      (signal) => said.push(signal),
    );
    expect(said).toEqual(['SIGKILL']);
    expect(attempts).toBe(2);
    expect(p.running).toBe(true);
    await p.stop();

    said.length = 0;
    await expect(
      startAgainIfKilledFromOutside(p, () => startAndWait(p, () => process.kill(p.pid!, 'SIGKILL')), (signal) => said.push(signal)),
    ).rejects.toThrow('exited during start-up');
    expect(said).toEqual(['SIGKILL']);

    const failing = proc('sh', ['-c', 'exit 3']);
    said.length = 0;
    await expect(startAgainIfKilledFromOutside(failing, () => startAndWait(failing), (signal) => said.push(signal))).rejects.toThrow(
      'exited during start-up',
    );
    expect(said).toEqual([]);
  });
});
