/**
 * The operator's worker thread reads the database through a plain pg pool so that it never loads the Prisma
 * client (~19 MB per region): no module it imports, however indirectly, may load src/db/client or the
 * generated client. (2026-12-02: recordDeliveries' pool import in delivery.ts, reached through
 * admin-routes → relay, loaded it.) Nor request validation (ajv and typebox, ~260 modules and ~0.1–0.2 s of CPU
 * at every region start: 2026-12-06, through admin-routes and storable-text → validate). Checked on the built
 * worker in a process of its own.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

test('the operator worker loads neither src/db/client nor the Prisma client, nor ajv or typebox', () => {
  const script = `
    const Module = require('node:module');
    const load = Module._load;
    const seen = [];
    Module._load = function (request, ...rest) { seen.push(request); return load.call(this, request, ...rest); };
    try { require('./dist/src/operator/worker.js'); } catch (err) { if (!/runs as a worker thread/.test(err.message)) throw err; }
    process.stdout.write(JSON.stringify({ count: seen.length, prisma: seen.filter((r) => /prisma|db\\/client$/.test(r)), validation: seen.filter((r) => /^(ajv|@sinclair\\/typebox)/.test(r)) }));
    process.exit(0);`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..', '..'), encoding: 'utf8' })) as { count: number; prisma: string[]; validation: string[] };
  expect(out.count).toBeGreaterThan(100);
  expect(out.prisma).toEqual([]);
  expect(out.validation).toEqual([]);
});
