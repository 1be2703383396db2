/**
 * A write whose transaction outruns its bound (writeTransactionTimeoutMs, 20 s by default; 1.5 s here)
 * answers 408 in the dialect's envelope, never 500, and says what happened: rolled back (its row stayed
 * locked), or, when its COMMIT had gone out and this process stalled past the bound while the database
 * committed, the write as it was kept (the backend is ended, then the outbox row read).
 */
import { Client } from 'pg';
import { adminHeaders, call, createOrg, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let org: { id: string; api_key: string };
let cred: string;

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('pastbound', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort], writeTransactionTimeoutMs: 1500 });
  org = await createOrg(r.url, 'past the bound');
  const res = await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'first' }, headers: slashidHeaders(org) });
  expect(res.status).toBe(201);
  cred = res.body.result.id;
}, 60_000);
afterAll(async () => {
  await r?.stop();
  await idp?.close();
});

const label = async () => (await call(r.url, 'GET', `${PATH}/${cred}`, { headers: slashidHeaders(org) })).body.result.label as string;
const patch = (value: string) => call(r.url, 'PATCH', `${PATH}/${cred}`, { body: { label: value }, headers: slashidHeaders(org) });

/** Another session that holds the credential's row locked until `release` is called. */
async function lockRow(): Promise<{ release(): Promise<unknown> }> {
  const holder = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM saml_provider_credentials WHERE id = $1 FOR UPDATE', [cred]);
  return { release: () => holder.query('COMMIT').finally(() => holder.end()) };
}

test('a write that waits on a locked row past the bound is a 408 saying nothing was written', async () => {
  const lock = await lockRow();
  try {
    const res = await patch('never');
    expect({ status: res.status, body: res.body, changeId: res.headers.get('x-change-id') }).toEqual({
      status: 408,
      body: { meta: {}, errors: [{ httpcode: 408, message: expect.stringMatching(/did not commit in us-iowa within the 2 s a write transaction may run .*nothing was written/) }] },
      changeId: null,
    });
  } finally {
    await lock.release();
  }
  expect(await label()).not.toBe('never');
});

test('a write the database committed while this process stalled past the bound is answered as the write it was', async () => {
  expect((await patch('warm')).status).toBe(204); // its row is the next write's guess: one round trip, COMMIT included
  const lock = await lockRow();
  const answer = patch('kept late');
  // The write's one batch waits on the lock. The lock goes, the database commits the write, and this
  // process stalls past the bound before it reads the reply: the bound's timer runs first.
  await new Promise((res) => setTimeout(res, 300));
  const released = lock.release();
  // (In a check-phase callback: the event loop runs its due timers before it next polls for I/O.)
  await new Promise<void>((res) =>
    setImmediate(() => {
      for (const until = Date.now() + 2000; Date.now() < until; );
      res();
    }),
  );
  await released;
  const res = await answer;
  expect({ status: res.status, body: res.body }).toEqual({ status: 204, body: null });
  expect(await label()).toBe('kept late');
});

test('an operator\'s accept of held metadata past the bound is a 408 too (nothing written), never a 500', async () => {
  // Another session holds the credential's per-key lock (the advisory lock every writer of the key takes).
  const holder = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`saml_provider_credentials:${cred}`]);
  try {
    const res = await call(r.url, 'POST', `/admin/metadata-refresh/${cred}/accept`, { headers: adminHeaders });
    expect({ status: res.status, body: res.body }).toEqual({
      status: 408,
      body: { meta: {}, errors: [{ httpcode: 408, message: expect.stringMatching(/did not commit in us-iowa within the 2 s a write transaction may run.*nothing was written/) }] },
    });
  } finally {
    await holder.query('COMMIT');
    await holder.end();
  }
});
