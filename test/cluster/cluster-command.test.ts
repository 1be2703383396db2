/** `npm run cluster`: starts every region of a custom config, says when they are ready, stops them all on SIGTERM. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';
import { ADMIN_TOKEN, createDeployment, type TestDeployment } from '../support/env';
import { adminHeaders, call, createOrg } from '../support/harness';

let dep: TestDeployment;
beforeAll(async () => {
  dep = await createDeployment('cluster-cmd', ['us-iowa', 'europe-belgium', 'asia-japan']);
});
afterAll(() => dep.cleanup());

function runCluster(env: Record<string, string>) {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'scripts', 'cluster.js')], {
    env: { ...process.env, REGIONS_CONFIG: dep.configPath, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      if (out.includes('cluster ready')) {
        clearInterval(t);
        resolve();
      }
    }, 50);
    child.once('exit', () => {
      clearInterval(t);
      reject(new Error(`cluster exited early:\n${out}`));
    });
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, ready, exited, output: () => out };
}

test('starts three regions from a custom config, prints their URLs, stops them on SIGTERM, and keeps the data', async () => {
  const first = runCluster({ ADMIN_TOKEN });
  await first.ready;
  for (const r of dep.file.regions) expect(first.output()).toContain(`READY ${r.id} http://127.0.0.1:${r.port}`);
  const url = `http://127.0.0.1:${dep.file.regions[0]?.port}`;
  const org = await createOrg(url, 'survivor', { headers: { 'SlashID-Required-Consistency': 'all_regions' } });
  first.child.kill('SIGTERM');
  expect(await first.exited).toBe(0);
  expect(first.output()).toContain('all regions stopped');
  await expect(call(url, 'GET', '/healthz')).rejects.toThrow();

  // Without ADMIN_TOKEN it makes one up and prints it; the data is still there after the restart.
  const second = runCluster({ ADMIN_TOKEN: '' });
  await second.ready;
  const token = /export ADMIN_TOKEN=(\S+)/.exec(second.output())?.[1] ?? '';
  expect(token.length).toBeGreaterThanOrEqual(16);
  const got = await call(`http://127.0.0.1:${dep.file.regions[2]?.port}`, 'GET', `/admin/organizations/${org.id}`, { headers: { authorization: `Bearer ${token}` } });
  expect(got.status).toBe(200);
  expect(got.body.name).toBe('survivor');
  expect((await call(url, 'GET', `/admin/organizations/${org.id}`, { headers: adminHeaders })).status).toBe(401);
  second.child.kill('SIGTERM');
  expect(await second.exited).toBe(0);
}, 120_000);
