/**
 * The baseline `npm run bench` compares the service with: the least an Express 5 + `pg` service does for
 * the same requests. One statement per request (no transaction, no authentication query, no replication),
 * the same headers in and the same JSON envelope out, a pool of 10 connections like a region's. Run as its
 * own process by bench/throughput.ts: `node dist/bench/baseline.js` with BASELINE_DATABASE_URL and PORT;
 * it prints "listening <port>" once it serves.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import pg from 'pg';
import { serverClasses } from '../src/http/server-classes';

const PATH = '/organizations/sso/saml/provider-credentials';

const COLUMNS = 'id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server';

interface BaselineRow {
  id: string;
  label: string;
  idp_metadata_url: string;
  email_claims: string[];
  enable_in_slashid_oidc_authz_server: boolean;
}

const envelope = (result: unknown) => ({ meta: {}, errors: [], result });

/** Creates the table and the 64 rows reads and patches rotate over; returns their ids. */
export async function seedBaseline(pool: pg.Pool, orgId: string, rows: number): Promise<string[]> {
  await pool.query(`CREATE TABLE IF NOT EXISTS baseline_credentials (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), org_id uuid NOT NULL, label text NOT NULL, idp_metadata_url text NOT NULL,
    email_claims text[] NOT NULL, enable_in_slashid_oidc_authz_server boolean NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
  const res = await pool.query<{ id: string }>(
    `INSERT INTO baseline_credentials (org_id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server)
     SELECT $1::uuid, 'c' || g, 'http://127.0.0.1/okta.xml', ARRAY['email'], false FROM generate_series(1, $2::int) g RETURNING id`,
    [orgId, rows],
  );
  return res.rows.map((r) => r.id);
}

function serve(pool: pg.Pool, port: number): void {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json());
  const orgOf = (req: express.Request) => req.get('SlashID-OrgID') ?? '';
  app.get(`${PATH}/:id`, async (req, res) => {
    const r = await pool.query<BaselineRow>(`SELECT ${COLUMNS} FROM baseline_credentials WHERE id = $1 AND org_id = $2`, [req.params.id, orgOf(req)]);
    if (!r.rows[0]) return void res.status(404).json({ meta: {}, errors: [{ httpcode: 404, message: 'not found' }] });
    res.json(envelope(r.rows[0]));
  });
  app.patch(`${PATH}/:id`, async (req, res) => {
    const body = req.body as { label?: string };
    await pool.query('UPDATE baseline_credentials SET label = $3 WHERE id = $1 AND org_id = $2', [req.params.id, orgOf(req), body.label ?? '']);
    res.status(204).end();
  });
  app.post(PATH, async (req, res) => {
    const body = req.body as { label?: string; idp_metadata_url: string };
    const r = await pool.query<BaselineRow>(
      `INSERT INTO baseline_credentials (org_id, label, idp_metadata_url, email_claims, enable_in_slashid_oidc_authz_server)
       VALUES ($1, $2, $3, ARRAY['email'], false) RETURNING ${COLUMNS}`,
      [orgOf(req), body.label ?? '', body.idp_metadata_url],
    );
    res.status(201).json(envelope(r.rows[0]));
  });
  // BASELINE_SERVER_CLASSES=1: the baseline with the service's fix for Express's per-request prototype change
  // (src/http/server-classes.ts), to show what that fix alone is worth. By default the baseline is plain Express.
  const server = process.env.BASELINE_SERVER_CLASSES === '1' ? http.createServer(serverClasses(app), app) : http.createServer(app);
  server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`));
}

if (require.main === module) {
  const url = process.env.BASELINE_DATABASE_URL;
  if (!url) throw new Error('BASELINE_DATABASE_URL is required');
  serve(new pg.Pool({ connectionString: url, max: 10 }), Number(process.env.PORT ?? 0));
}
