/**
 * The 431 names the header limit the region runs with: Node's 16 KiB unless `--max-http-header-size`
 * (here through NODE_OPTIONS) changes it. It named 16 KiB whatever the limit was. A region process of its own.
 */
import { startCluster, type Cluster } from '../support/harness';
import { rawExchangeWith } from '../support/raw-http';

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster('header-limit', ['us-iowa'], { env: { NODE_OPTIONS: '--max-http-header-size=32768' } });
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

const get = (filler: number) => {
  const request = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: ${'x'.repeat(filler)}\r\nConnection: close\r\n\r\n`;
  return rawExchangeWith(Number(new URL(cluster.url('us-iowa')).port), request, 3000);
};

test('headers over the 16 KiB default but under the region\'s 32 KiB are taken', async () => {
  expect((await get(20_000)).split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
});

test('headers over the region\'s limit are a 431 that names that limit', async () => {
  const answer = await get(40_000);
  expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 431 Request Header Fields Too Large');
  expect(answer).toContain('together at most 32 KiB); nothing was done.');
});
