/**
 * The region's HTTP server constructs requests and responses with Express's prototypes already in place
 * (src/http/server-classes.ts), so Express's per-request setPrototypeOf changes nothing and requests share
 * their hidden classes. The second test asks V8 itself, in a child process of the build (natives syntax).
 */
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import { PROJECT_ROOT } from '../src/paths';
import { serverClasses } from '../src/http/server-classes';

async function serve(server: http.Server, requests: number, method = 'GET'): Promise<string[]> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const bodies: string[] = [];
  try {
    for (let i = 0; i < requests; i++) bodies.push(await (await fetch(`http://127.0.0.1:${port}/x?i=${i}`, { method, headers: { 'x-probe': `p${i}` } })).text());
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
  return bodies;
}

test('a request reaches Express already an instance of app.request, and Express works on it as before', async () => {
  const app = express();
  app.get('/x', (req, res) => res.json({ probe: req.get('x-probe'), query: req.query, isRequest: req instanceof http.IncomingMessage }));
  const seen: boolean[] = [];
  const server = http.createServer(serverClasses(app), (req, res) => {
    seen.push(Object.getPrototypeOf(req) === app.request && Object.getPrototypeOf(res) === app.response);
    app(req, res);
  });
  const bodies = await serve(server, 3);
  expect(seen).toEqual([true, true, true]);
  expect(bodies.map((b) => JSON.parse(b))).toEqual([0, 1, 2].map((i) => ({ probe: `p${i}`, query: { i: String(i) }, isRequest: true })));
});

test('requests served through Express share one hidden class with the server classes, and do not without them', () => {
  // A child of the build with V8's natives syntax: %HaveSameMap compares two objects' hidden classes.
  const script = `
    const http = require('node:http');
    const express = require('express');
    const { serverClasses } = require(${JSON.stringify(path.join(PROJECT_ROOT, 'dist', 'src', 'http', 'server-classes.js'))});
    async function run(withClasses) {
      const app = express();
      const kept = [];
      app.get('/x', (req, res) => { kept.push([req, res]); res.json({ ok: true }); });
      const server = withClasses ? http.createServer(serverClasses(app), app) : http.createServer(app);
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      for (let i = 0; i < 12; i++) await (await fetch('http://127.0.0.1:' + server.address().port + '/x')).text();
      server.close();
      const [a, b] = kept.slice(-2);
      return { req: %HaveSameMap(a[0], b[0]), res: %HaveSameMap(a[1], b[1]) };
    }
    (async () => { process.stdout.write(JSON.stringify({ with: await run(true), without: await run(false) })); process.exit(0); })();
  `;
  const out = spawnSync(process.execPath, ['--allow-natives-syntax', '-e', script], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 30000 });
  expect(out.stderr).toBe('');
  expect(JSON.parse(out.stdout)).toEqual({ with: { req: true, res: true }, without: { req: false, res: false } });
});
