/**
 * A database that refuses statements for its own state, not for what they ask: read-only (a standby after a
 * failover, or `default_transaction_read_only` set by an operator), out of disk, or canceling them (its
 * `statement_timeout`). A region process answers such a request 503 with Retry-After in its dialect's
 * envelope, naming the reason, not a 500 (a fault drill found every write answering 500 while the database
 * was read-only, and a write answering 500 when its statement timed out), and writes again once it is over.
 * While its database is read-only the region is not ready (/readyz said ready with every write failing).
 */
import { Client } from 'pg';
import { adminHeaders, call, createOrg, eventually, slashidHeaders, startCluster, type Cluster } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { bearer, configBody, issueToken, makeCerts, SSO } from '../infisical/support/fixtures';

const PATH = '/organizations/sso/saml/provider-credentials';
let c: Cluster;
let url: string;
let idp: IdpServer;
let admin: Client;
let db: Client;
let database: string;
/** Made before any connection exists (without the run's global setup, openssl, synchronous: on a loaded host it outlasted the keep-alive of the connections it held idle). */
const { pem } = makeCerts();

beforeAll(async () => {
  idp = await startIdpServer();
  idp.set('refusal.xml', fixture('okta.xml'));
  c = await startCluster('refusals', ['us-iowa'], { extra: { metadataAllowedHosts: [idp.hostPort] } });
  url = c.url('us-iowa');
  const dbUrl = new URL(c.deployment.configFor('us-iowa').region.databaseUrl);
  database = dbUrl.pathname.slice(1);
  db = new Client({ connectionString: dbUrl.toString() });
  await db.connect();
  dbUrl.pathname = '/postgres';
  admin = new Client({ connectionString: dbUrl.toString() });
  await admin.connect();
});
afterAll(async () => {
  await admin?.query(`ALTER DATABASE "${database}" RESET ALL`).catch(() => undefined);
  await admin?.end();
  await db?.end();
  await c?.stop();
  await idp?.close();
});

/** Sets a database setting for new sessions and ends the region's sessions, so its pools reopen under it. */
async function setForRegion(setting: string | null): Promise<void> {
  await admin.query(setting === null ? `ALTER DATABASE "${database}" RESET ALL` : `ALTER DATABASE "${database}" SET ${setting}`);
  await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2', [database, (await db.query('SELECT pg_backend_pid() AS pid')).rows[0].pid]);
}

const unavailable = (reason: RegExp) => ({
  status: 503,
  retry: '2',
  body: { meta: {}, errors: [{ httpcode: 503, message: expect.stringMatching(reason) }] },
});

test('while the database is read-only every write answers 503 with Retry-After saying so, reads answer, and writes work again after', async () => {
  const org = await createOrg(url, 'refusals-ro');
  const token = await issueToken(url, org.id);
  const created = await call(url, 'POST', PATH, { body: { idp_metadata_url: idp.url('refusal.xml'), label: 'before' }, headers: slashidHeaders(org) });
  expect(created.status).toBe(201);
  const id = created.body.result.id as string;

  await setForRegion('default_transaction_read_only = on');
  try {
    // The pools reopen their connections as requests come; the first may still run on one ended under it.
    const refused = async () => {
      const res = await call(url, 'POST', '/admin/organizations', { body: { name: 'refusals-probe' }, headers: adminHeaders });
      return res.status !== 201 && !/lost its connection|ended the write's connection/.test(String(res.body?.errors?.[0]?.message));
    };
    expect(await eventually(refused, 15_000, 200)).toBe(true);
    const writes: [string, string, Record<string, string>, unknown?][] = [
      ['POST', '/admin/organizations', adminHeaders, { name: 'during' }],
      ['POST', PATH, slashidHeaders(org), { idp_metadata_url: idp.url('refusal.xml'), label: 'during' }],
      ['PATCH', `${PATH}/${id}`, slashidHeaders(org), { label: 'during' }],
      ['DELETE', `${PATH}/${id}`, slashidHeaders(org)],
    ];
    for (const [method, path, headers, body] of writes) {
      const res = await call(url, method, path, { headers, body });
      expect({ at: `${method} ${path}`, status: res.status, retry: res.headers.get('retry-after'), body: res.body }).toEqual({
        at: `${method} ${path}`,
        ...unavailable(/database is read-only right now .*transaction was rolled back\. Retry shortly, or send it to another region\./),
      });
    }
    const infisical = await call(url, 'POST', SSO, { headers: bearer(token), body: configBody(org.id, pem) });
    expect({ status: infisical.status, retry: infisical.headers.get('retry-after') }).toEqual({ status: 503, retry: '2' });
    expect(infisical.body).toMatchObject({ statusCode: 503, message: expect.stringMatching(/database is read-only right now/) });
    const read = await call(url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) });
    expect({ status: read.status, label: read.body.result?.label }).toEqual({ status: 200, label: 'before' });
  } finally {
    await setForRegion(null);
  }
  expect(await eventually(async () => (await call(url, 'PATCH', `${PATH}/${id}`, { headers: slashidHeaders(org), body: { label: 'after' } })).status === 204, 15_000, 200)).toBe(true);
  expect((await db.query('SELECT count(*)::int AS n FROM organizations WHERE name = $1', ['during'])).rows[0].n).toBe(0);
});

test('while the database is read-only /readyz answers 503 saying so (every write would fail), and 200 again after', async () => {
  const readyz = async () => {
    const res = await call(url, 'GET', '/readyz');
    return { status: res.status, ready: res.body.ready, database: res.body.database };
  };
  expect(await readyz()).toEqual({ status: 200, ready: true, database: 'ok' });
  await setForRegion('default_transaction_read_only = on');
  try {
    expect(await eventually(async () => (await readyz()).database === 'read-only', 15_000, 200)).toBe(true);
    expect(await readyz()).toEqual({ status: 503, ready: false, database: 'read-only' });
  } finally {
    await setForRegion(null);
  }
  expect(await eventually(async () => (await readyz()).status === 200, 15_000, 200)).toBe(true);
  expect(await readyz()).toEqual({ status: 200, ready: true, database: 'ok' });
});

/**
 * A credential PATCHed while a setting of the database (a timeout) is in force for the region's sessions and
 * the test holds a lock on the credentials table: the answer, the credential's id, and its label afterwards.
 */
async function patchUnderLock(name: string, setting: string) {
  const org = await createOrg(url, name);
  const created = await call(url, 'POST', PATH, { body: { idp_metadata_url: idp.url('refusal.xml'), label: 'before' }, headers: slashidHeaders(org) });
  expect(created.status).toBe(201);
  const id = created.body.result.id as string;
  await setForRegion(setting);
  let res;
  try {
    // Wait until the region's pool runs under the setting (a cheap read goes through either way).
    expect(await eventually(async () => (await call(url, 'GET', `${PATH}/${id}`, { headers: slashidHeaders(org) })).status === 200, 15_000, 200)).toBe(true);
    // A lock in the way holds the write's statement past the timeout.
    await db.query('BEGIN');
    await db.query('LOCK TABLE saml_provider_credentials IN EXCLUSIVE MODE');
    try {
      res = await call(url, 'PATCH', `${PATH}/${id}`, { headers: slashidHeaders(org), body: { label: 'during' } });
    } finally {
      await db.query('ROLLBACK');
    }
  } finally {
    await setForRegion(null);
  }
  const label = (await db.query('SELECT label FROM saml_provider_credentials WHERE id = $1', [id])).rows[0].label as string;
  return { res, label };
}

test('a write whose statement the database cancels (its statement_timeout) answers 503 with Retry-After, and nothing is written', async () => {
  const { res, label } = await patchUnderLock('refusals-timeout', "statement_timeout = '400ms'");
  expect({ status: res.status, retry: res.headers.get('retry-after'), body: res.body }).toEqual(unavailable(/database canceled the statement \(its statement_timeout ran out/));
  expect(label).toBe('before');
});

test('a write the database cannot store (its disk full) answers 503 with Retry-After saying so', async () => {
  const org = await createOrg(url, 'refusals-disk');
  await db.query(`CREATE FUNCTION refusals_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$`);
  await db.query('CREATE TRIGGER refusals_disk_full BEFORE INSERT ON saml_provider_credentials FOR EACH ROW EXECUTE FUNCTION refusals_disk_full()');
  try {
    const res = await call(url, 'POST', PATH, { body: { idp_metadata_url: idp.url('refusal.xml'), label: 'full' }, headers: slashidHeaders(org) });
    expect({ status: res.status, retry: res.headers.get('retry-after'), body: res.body }).toEqual(unavailable(/database could not write \(its disk is full, or an I\/O error\)/));
  } finally {
    await db.query('DROP TRIGGER refusals_disk_full ON saml_provider_credentials');
    await db.query('DROP FUNCTION refusals_disk_full()');
  }
  expect((await db.query('SELECT count(*)::int AS n FROM saml_provider_credentials WHERE label = $1', ['full'])).rows[0].n).toBe(0);
});

test("a write that waits for a lock past the database's lock_timeout on each attempt answers 503 with Retry-After naming the lock wait, and nothing is written", async () => {
  const { res, label } = await patchUnderLock('refusals-lock', "lock_timeout = '150ms'");
  expect({ status: res.status, retry: res.headers.get('retry-after'), body: res.body }).toEqual({
    status: 503,
    retry: '1',
    body: { meta: {}, errors: [{ httpcode: 503, message: expect.stringMatching(/waited for a lock held by another session .* lock_timeout, on each of its attempts; nothing was done/) }] },
  });
  expect(label).toBe('before');
});
