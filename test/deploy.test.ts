/**
 * The container artefacts, checked without a Docker engine (there is none on the build machines): the
 * configs they ship or mount are valid, carry no development allow-list, and compose gives a region
 * longer to stop than its drain takes.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { readConfigFile } from '../src/config';
import { PROJECT_ROOT } from '../src/paths';
import { DEFAULT_DRAIN_TIMEOUT_MS } from '../src/region';

const read = (f: string) => fs.readFileSync(path.join(PROJECT_ROOT, f), 'utf8');
const DRAIN_SECONDS = DEFAULT_DRAIN_TIMEOUT_MS / 1000;

test.each(['deploy/regions.example.json', 'deploy/regions.compose.json'])('%s is a valid config without a metadata allow-list', (f) => {
  const file = readConfigFile(path.join(PROJECT_ROOT, f));
  expect(file.regions.length).toBeGreaterThanOrEqual(3);
  expect(file.metadataAllowedHosts ?? []).toEqual([]);
  for (const r of file.regions) expect(r.host).toBe('0.0.0.0');
});

test('the image is Node 22, installs without scripts, ships only the service, listens on 0.0.0.0 and has a health check', () => {
  const df = read('Dockerfile');
  expect(df.match(/^FROM node:22-/gm)).toHaveLength(2);
  expect(df).toMatch(/npm ci --ignore-scripts/);
  expect(df).not.toMatch(/^COPY (scripts|bench|test)\b/m);
  expect(df).not.toMatch(/^COPY regions\.config\.json/m);
  expect(df).toMatch(/HOST=0\.0\.0\.0/);
  expect(df).toMatch(/^HEALTHCHECK /m);
  expect(JSON.parse(read('tsconfig.image.json')).include).toEqual(['src']);
});

test('compose builds one image once, mounts the compose config, and waits longer than a drain', () => {
  const compose = YAML.parse(read('docker-compose.yml'), { merge: true }) as {
    services: Record<string, { build?: string; image?: string; stop_grace_period?: string; environment?: Record<string, string> }>;
  };
  const regions = ['us-iowa', 'europe-belgium', 'asia-japan'].map((r) => compose.services[r]);
  expect(regions.filter((s) => s?.build)).toHaveLength(1);
  for (const s of regions) {
    expect(s?.image).toBe('saml-credential-service:local');
    expect(s?.environment?.REGIONS_CONFIG).toBe('/etc/saml/regions.json');
    expect(Number.parseInt(s?.stop_grace_period ?? '0', 10)).toBeGreaterThan(DRAIN_SECONDS);
  }
  expect(read('docker-compose.yml')).toMatch(/LOCAL DEMO ONLY/);
});

test('compose\'s health check is the image\'s (test/healthcheck.test.ts runs it against a region)', () => {
  const compose = YAML.parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, { healthcheck?: { test?: string[] } }> };
  const image = JSON.parse(/^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])\s*$/m.exec(read('Dockerfile'))?.[1] ?? 'null') as string[] | null;
  expect(image).toEqual(['node', 'dist/src/healthcheck.js']);
  for (const r of ['us-iowa', 'europe-belgium', 'asia-japan']) expect(compose.services[r]?.healthcheck?.test).toEqual(['CMD', ...(image ?? [])]);
});

test('compose runs a Redis per region, and each region names its own in the config it mounts', () => {
  const compose = YAML.parse(read('docker-compose.yml'), { merge: true }) as {
    services: Record<string, { image?: string; depends_on?: Record<string, unknown> }>;
  };
  const file = JSON.parse(read('deploy/regions.compose.json')) as { regions: { id: string; redisUrl?: string }[] };
  for (const r of file.regions) {
    const service = `redis-${r.id}`;
    expect(compose.services[service]?.image).toMatch(/^redis:/);
    expect(r.redisUrl).toBe(`redis://${service}:6379`);
    expect(Object.keys(compose.services[r.id]?.depends_on ?? {})).toContain(service);
  }
  expect(new Set(file.regions.map((r) => r.redisUrl)).size).toBe(file.regions.length);
});
