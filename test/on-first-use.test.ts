/**
 * Packages only some requests need are loaded by the first such request, not at a region's start
 * (src/on-first-use.ts): a started region that has served the API's plain requests has loaded none of
 * them, and the requests that need them load them and succeed. A region process of its own, with a preload
 * that records every package it loads (test/support/loaded-packages.cjs). An installation without one of
 * them still fails as the region's modules load, as it did when they were imported.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/paths';
import { adminHeaders, assertBuilt, call, createOrg, slashidHeaders, startCluster, type Cluster } from './support/harness';
import { startIdpServer, type IdpServer } from './support/idp-server';

const ON_FIRST_USE = ['undici', '@node-saml/node-saml', 'jsonwebtoken', '@xmldom/xmldom', 'xml-crypto'];

let cluster: Cluster;
let idp: IdpServer;
let dir: string;
let file: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'on-first-use-'));
  file = path.join(dir, 'loaded');
  idp = await startIdpServer();
  cluster = await startCluster('on-first-use', ['us-iowa'], {
    extra: { metadataAllowedHosts: [idp.hostPort] },
    env: { NODE_OPTIONS: `--require ${path.join(__dirname, 'support', 'loaded-packages.cjs')}`, LOADED_PACKAGES_FILE: file },
  });
}, 120_000);
afterAll(async () => {
  await cluster?.stop(0);
  await idp?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const loaded = () => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
const lazyLoaded = () => loaded().filter((id) => ON_FIRST_USE.includes(id));

test('a started region serving plain requests has loaded none of the packages kept for first use', async () => {
  // The preload works: the packages every region needs are there.
  expect(loaded()).toEqual(expect.arrayContaining(['express', 'ioredis', 'ajv']));
  const url = cluster.url('us-iowa');
  const org = await createOrg(url, 'first-use');
  const list = await call(url, 'GET', '/organizations/sso/saml/provider-credentials', { headers: slashidHeaders(org) });
  expect(list.status).toBe(200);
  expect(lazyLoaded()).toEqual([]);
});

test('the requests that need them load them, and succeed', async () => {
  const url = cluster.url('us-iowa');
  const org = await createOrg(url, 'first-use-2');
  // A credential from a metadata URL: fetched (undici) and parsed (xmldom).
  const created = await call(url, 'POST', '/organizations/sso/saml/provider-credentials', {
    body: { idp_metadata_url: idp.url('okta.xml') },
    headers: slashidHeaders(org),
  });
  expect(created.status).toBe(201);
  expect(lazyLoaded()).toEqual(expect.arrayContaining(['undici', '@xmldom/xmldom']));
  expect(lazyLoaded()).not.toContain('jsonwebtoken');
  expect(lazyLoaded()).not.toContain('@node-saml/node-saml');
  // An SSO sign-in's start: node-saml writes the AuthnRequest.
  const login = await fetch(`${url}/sso/saml/${created.body.result.id}/login`, { redirect: 'manual' });
  expect(login.status).toBe(302);
  expect(lazyLoaded()).toContain('@node-saml/node-saml');
  // An Infisical access token: jsonwebtoken.
  const token = await call(url, 'POST', `/admin/organizations/${org.id}/access-tokens`, { headers: adminHeaders });
  expect(token.status).toBe(201);
  expect(lazyLoaded()).toContain('jsonwebtoken');
});

test.each(ON_FIRST_USE)('a region whose installation lacks %s fails as it loads, as with a static import', (id) => {
  // Loaded on first use, a missing package would only show at the first request that needs it (a 500 from a
  // region that started and reported ready); its path is resolved when the region's modules load instead.
  assertBuilt();
  const hide = `const M = require('node:module'); const r = M._resolveFilename;
    M._resolveFilename = function (request, ...rest) {
      if (request === ${JSON.stringify(id)}) throw Object.assign(new Error("Cannot find module '" + request + "'"), { code: 'MODULE_NOT_FOUND' });
      return r.call(this, request, ...rest);
    };
    require(${JSON.stringify(path.join(PROJECT_ROOT, 'dist', 'src', 'region.js'))});`;
  const run = spawnSync(process.execPath, ['-e', hide], { encoding: 'utf8', timeout: 30_000 });
  expect(run.stderr).toContain(`Cannot find module '${id}'`);
  expect(run.status).not.toBe(0);
});
