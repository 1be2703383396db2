/**
 * The tests' ports: a port one process chose is not chosen by another while the first lives, even while nothing
 * listens on it (a region stopped to be started again on its port). CI once failed a region's start because
 * another test file had been given the port of a region that was down.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePorts, PORT_RESERVATIONS, reservePort } from '../support/env';

const file = (port: number) => path.join(PORT_RESERVATIONS, String(port));

function otherProcess(): ChildProcess {
  return spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
}

async function ended(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((resolve) => child.once('exit', resolve));
}

describe('test ports', () => {
  it('are reserved for the process that chose them, and not chosen again by it', async () => {
    const ports = await freePorts(3);
    expect(new Set(ports).size).toBe(3);
    for (const port of ports) {
      expect(fs.readFileSync(file(port), 'utf8')).toBe(String(process.pid));
      expect(reservePort(port)).toBe(false);
    }
    const more = await freePorts(3);
    expect(more.filter((p) => ports.includes(p))).toEqual([]);
  });

  it('held by another living process are refused; once it ended, they can be reserved again', async () => {
    const [port] = await freePorts(1);
    fs.rmSync(file(port!));
    const other = otherProcess();
    try {
      fs.writeFileSync(file(port!), String(other.pid));
      expect(reservePort(port!)).toBe(false);
      expect(fs.readFileSync(file(port!), 'utf8')).toBe(String(other.pid));
    } finally {
      other.kill('SIGKILL');
      await ended(other);
    }
    expect(reservePort(port!)).toBe(true);
    expect(fs.readFileSync(file(port!), 'utf8')).toBe(String(process.pid));
  });
});
