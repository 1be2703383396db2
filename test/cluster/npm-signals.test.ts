/**
 * A SIGTERM to `npm run <script>` (what a process manager or `kill <npm's pid>` sends) ends the service it
 * runs. npm passes the signal to the shell it ran the script in, and that shell (dash) ended without passing
 * it on: the service went on running, orphaned (helper-130 found `npm run cluster` leaving its regions so).
 * Each script therefore `exec`s its program, which then gets the signal itself.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';
import { eventually } from '../support/harness';
import { freePorts } from '../support/env';
import { rawExchangeWith } from '../support/raw-http';

const scripts = (JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

test.each(['start', 'cluster', 'reseed', 'members', 'idp:fixtures', 'idp:simulator', 'test', 'bench', 'harness', 'test:faults', 'test:conflicts'])(
  'npm run %s execs its program, so that the program itself gets npm\'s signals',
  (name) => {
    const last = (scripts[name] ?? '').split('&&').pop()?.trim() ?? '';
    expect(last).toMatch(/^exec /);
  },
);

test('a SIGTERM to npm ends the service of `npm run idp:fixtures`', async () => {
  const [port] = await freePorts(1);
  const npm = spawn('npm', ['run', '--silent', 'idp:fixtures'], { cwd: PROJECT_ROOT, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const serving = async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/okta.xml`)).status === 200;
    } catch {
      return false;
    }
  };
  try {
    expect(await eventually(serving, 30_000, 100)).toBe(true);
    npm.kill('SIGTERM');
    // The fixture server stops with it (before the fix it went on serving with npm gone).
    expect(await eventually(async () => !(await serving()), 10_000, 100)).toBe(true);
  } finally {
    npm.kill('SIGKILL');
    // Should the server have outlived npm, end it by its port's owner, so the test leaves nothing behind.
    if (await serving()) spawn('fuser', ['-k', `${port}/tcp`]);
  }
  expect(out).toContain('serving on');
}, 60_000);

/**
 * The walkthrough's two IdP servers take what a tenant's metadata URL holds, and answer a path they cannot read
 * with a 400 instead of ending: a malformed %-escape (`okta.xml?a=%zz`, `/%zz`) threw decodeURIComponent's
 * URIError out of `npm run idp:fixtures`' request handler, and a request target the URL parser refuses
 * (`//x:abc`) threw out of `npm run idp:simulator`'s; each process exited, and every later fetch was refused.
 */
test.each([
  ['idp:fixtures', '/okta.xml', ['/%zz', '/okta.xml?a=%zz']],
  ['idp:simulator', '/metadata.xml', ['//x:abc']],
])('`npm run %s` answers a path it cannot read and goes on serving', async (script, served, odd) => {
  const [port] = await freePorts(1);
  const npm = spawn('npm', ['run', '--silent', script], { cwd: PROJECT_ROOT, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const status = async (target: string) => (await rawExchangeWith(port as number, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)).split('\r\n')[0];
  const serving = async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}${served}`)).status === 200;
    } catch {
      return false;
    }
  };
  try {
    expect(await eventually(serving, 30_000, 100)).toBe(true);
    const answers = [];
    for (const target of odd) answers.push(await status(target));
    expect(answers).not.toContain('');
    // okta.xml with an unreadable query is still okta.xml; an unreadable path is a 400.
    if (script === 'idp:fixtures') expect(answers).toEqual(['HTTP/1.1 400 Bad Request', 'HTTP/1.1 200 OK']);
    else expect(answers).toEqual(['HTTP/1.1 400 Bad Request']);
    expect(await serving()).toBe(true);
    expect(out).not.toMatch(/Error/);
  } finally {
    npm.kill('SIGTERM');
    await eventually(async () => !(await serving()), 10_000, 100);
    npm.kill('SIGKILL');
  }
}, 60_000);
