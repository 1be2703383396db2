/**
 * schema.prisma and the SQL migrations are written by hand (the schema engine cannot run here), so this
 * test keeps them in step: after migrating a fresh database, every model's table has exactly the model's
 * columns with the same nullability, and every model can be read through the generated client.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import type { Db } from '../../src/db/client';
import { listMigrations, migrate } from '../../src/db/migrate';
import { PROJECT_ROOT } from '../../src/paths';
import { migratedDb, type MigratedDb } from '../support/migrated-db';

interface ModelSpec {
  model: string;
  table: string;
  columns: Map<string, { nullable: boolean }>;
}

function parseSchema(text: string): ModelSpec[] {
  const specs: ModelSpec[] = [];
  for (const m of text.matchAll(/^model (\w+) \{([\s\S]*?)^\}/gm)) {
    const [, model = '', body = ''] = m;
    const table = /@@map\("([^"]+)"\)/.exec(body)?.[1] ?? model;
    const columns = new Map<string, { nullable: boolean }>();
    for (const line of body.split('\n')) {
      const f = /^\s*(\w+)\s+(\w+)(\[\])?(\?)?(.*)$/.exec(line);
      if (!f || line.trim().startsWith('//') || line.trim().startsWith('@@')) continue;
      const [, name = '', , list, optional, rest = ''] = f;
      const column = /@map\("([^"]+)"\)/.exec(rest)?.[1] ?? name;
      // Prisma scalar lists are nullable arrays in SQL.
      columns.set(column, { nullable: Boolean(optional) || Boolean(list) });
    }
    specs.push({ model, table, columns });
  }
  return specs;
}

const specs = parseSchema(fs.readFileSync(path.join(PROJECT_ROOT, 'prisma', 'schema.prisma'), 'utf8'));
let m: MigratedDb;
let pg: Client;
let db: Db;

beforeAll(async () => {
  m = await migratedDb('drift');
  db = m.db;
  pg = new Client({ connectionString: m.url });
  await pg.connect();
});
afterAll(async () => {
  await pg.end();
  await m.close();
});

test('the schema declares models', () => {
  expect(specs.length).toBeGreaterThanOrEqual(7);
});

test.each(specs.map((s) => [s.model, s] as const))('%s matches its migrated table', async (_m, spec) => {
  const res = await pg.query<{ column_name: string; is_nullable: string }>(
    `SELECT column_name, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1`,
    [spec.table],
  );
  const actual = new Map(res.rows.map((r) => [r.column_name, { nullable: r.is_nullable === 'YES' }]));
  expect(Object.fromEntries(actual)).toEqual(Object.fromEntries(spec.columns));
});

test.each(specs.map((s) => [s.model] as const))('%s can be read through the generated client', async (model) => {
  const delegate = (db as unknown as Record<string, { findFirst: () => Promise<unknown> }>)[model.charAt(0).toLowerCase() + model.slice(1)];
  expect(delegate).toBeDefined();
  await expect(delegate?.findFirst()).resolves.toBeNull();
});

test('migrations are recorded the way prisma migrate records them', async () => {
  const rows = await pg.query<{ migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number }>(
    'SELECT migration_name, checksum, finished_at, applied_steps_count FROM _prisma_migrations ORDER BY migration_name',
  );
  expect(rows.rows.map((r) => [r.migration_name, r.checksum])).toEqual(listMigrations().map((m) => [m.name, m.checksum]));
  expect(rows.rows.every((r) => r.finished_at !== null && r.applied_steps_count === 1)).toBe(true);
  // Running it again applies nothing.
  expect(await migrate(m.url)).toEqual([]);
});
