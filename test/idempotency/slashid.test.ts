/**
 * Idempotency-Key on POST /organizations/sso/saml/provider-credentials, on one region: replays, a key
 * reused with another body, per-organization scope, concurrent retries, expiry and the cleanup job.
 */
import { Client } from 'pg';
import type { Db } from '../../src/db/client';
import { IdempotencyKeyCleanup } from '../../src/idempotency/cleanup';
import { idempotencyRowId } from '../../src/idempotency/request';
import { CREATE_ENDPOINT } from '../../src/provider-credentials/routes';
import { call, createOrg, eventually, slashidHeaders } from '../support/harness';
import { fixture, startIdpServer, type IdpServer } from '../support/idp-server';
import { rawExchangeWith } from '../support/raw-http';
import { startInProcess, type InProcessRegion } from '../support/in-process';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('idem-slashid', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
});
afterAll(async () => {
  await r?.stop();
  await idp?.close();
});

type Org = { id: string; api_key: string };
const newOrg = (name = 'acme'): Promise<Org> => createOrg(r.url, name);

const body = (label = 'Okta prod') => ({
  idp_metadata_url: idp.url('okta.xml'),
  label,
  email_claims: ['email'],
  enable_in_slashid_oidc_authz_server: true,
});

function post(org: Org, payload: unknown, key?: string, extra: Record<string, string> = {}) {
  const headers = key === undefined ? extra : { 'Idempotency-Key': key, ...extra };
  return call(r.url, 'POST', PATH, { body: payload, headers: slashidHeaders(org, headers) });
}

const credentials = (org: Org) => r.region.db.samlProviderCredential.count({ where: { orgId: org.id, deletedAt: null } });
const keyRows = (org: Org) => r.region.db.idempotencyKey.count({ where: { orgId: org.id } });

describe('a retry with the same key and body', () => {
  test('answers 201 with the same credential, marked as replayed, and creates nothing more', async () => {
    const org = await newOrg();
    const first = await post(org, body(), 'create-okta-1');
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await post(org, body(), 'create-okta-1');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
    expect(again.body.result.id).toBe(first.body.result.id);
    // The change that stored it, so a client whose first answer was lost can follow it up.
    expect(again.headers.get('x-change-id')).toBe(first.headers.get('x-change-id'));
    expect(again.headers.get('x-change-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(again.headers.get('location')).toBe(`/organizations/sso/saml/provider-credentials/${String(first.body.result.id)}`);
    expect(await credentials(org)).toBe(1);
    expect(await keyRows(org)).toBe(1);
  });

  test('is answered before the IdP metadata is fetched again, so it works while the IdP is down', async () => {
    const org = await newOrg();
    idp.set('flaky.xml', fixture('okta.xml'));
    const payload = { idp_metadata_url: idp.url('flaky.xml') };
    const first = await post(org, payload, 'while-idp-down');
    expect(first.status).toBe(201);
    const fetches = idp.hits('flaky.xml');
    idp.remove('flaky.xml');
    const again = await post(org, payload, 'while-idp-down');
    expect(again.status).toBe(201);
    expect(again.body.result.id).toBe(first.body.result.id);
    expect(idp.hits('flaky.xml')).toBe(fetches);
  });

  test('matches however the body orders its fields', async () => {
    const org = await newOrg();
    const first = await post(org, body(), 'reordered');
    const b = body();
    const reordered = { enable_in_slashid_oidc_authz_server: b.enable_in_slashid_oidc_authz_server, email_claims: b.email_claims, label: b.label, idp_metadata_url: b.idp_metadata_url };
    const again = await post(org, reordered, 'reordered');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.result.id).toBe(first.body.result.id);
  });

  test('replays the original answer with any consistency level', async () => {
    const org = await newOrg();
    const first = await post(org, body(), 'any-level');
    const again = await post(org, body(), 'any-level', { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '1' });
    expect(again.status).toBe(201);
    expect(again.body.result.id).toBe(first.body.result.id);
  });
});

describe('the same key with a different body', () => {
  test('answers 422 saying the key was used for another request, and writes nothing', async () => {
    const org = await newOrg();
    const first = await post(org, body('one'), 'k-1');
    expect(first.status).toBe(201);
    const fetches = idp.hits('okta.xml');
    const other = await post(org, body('two'), 'k-1');
    expect(other.status).toBe(422);
    expect(other.body).toEqual({ meta: {}, errors: [{ httpcode: 422, message: expect.stringContaining("Idempotency-Key 'k-1' was already used with a different request body") }] });
    expect(idp.hits('okta.xml')).toBe(fetches);
    expect(await credentials(org)).toBe(1);
    // The key still belongs to the first request.
    const retry = await post(org, body('one'), 'k-1');
    expect(retry.status).toBe(201);
    expect(retry.body.result.id).toBe(first.body.result.id);
  });

  test('a field left to its default is a different body', async () => {
    const org = await newOrg();
    await post(org, { idp_metadata_url: idp.url('okta.xml') }, 'defaults');
    const explicit = await post(org, { idp_metadata_url: idp.url('okta.xml'), label: '' }, 'defaults');
    expect(explicit.status).toBe(422);
  });
});

describe('scope and absence of a key', () => {
  test('two organizations use the same key independently', async () => {
    const a = await newOrg('a');
    const b = await newOrg('b');
    const ra = await post(a, body(), 'shared-key');
    const rb = await post(b, body('other body'), 'shared-key');
    expect(ra.status).toBe(201);
    expect(rb.status).toBe(201);
    expect(rb.headers.get('idempotent-replayed')).toBeNull();
    expect(rb.body.result.id).not.toBe(ra.body.result.id);
    expect(await credentials(a)).toBe(1);
    expect(await credentials(b)).toBe(1);
  });

  test('without a key, two identical POSTs create two credentials', async () => {
    const org = await newOrg();
    const one = await post(org, body());
    const two = await post(org, body());
    expect(one.status).toBe(201);
    expect(two.status).toBe(201);
    expect(two.body.result.id).not.toBe(one.body.result.id);
    expect(await credentials(org)).toBe(2);
    expect(await keyRows(org)).toBe(0);
  });

  test('a request that fails does not use up its key', async () => {
    const org = await newOrg();
    idp.remove('late.xml');
    const payload = { idp_metadata_url: idp.url('late.xml') };
    const failed = await post(org, payload, 'retry-after-failure');
    expect(failed.status).toBeGreaterThanOrEqual(400);
    expect(failed.status).toBeLessThan(500);
    expect(await keyRows(org)).toBe(0);
    idp.set('late.xml', fixture('okta.xml'));
    const ok = await post(org, payload, 'retry-after-failure');
    expect(ok.status).toBe(201);
    expect(ok.headers.get('idempotent-replayed')).toBeNull();
    expect(await credentials(org)).toBe(1);
  });
});

describe('an invalid Idempotency-Key header', () => {
  test.each([
    ['an empty key', ''],
    ['a key of 256 characters', 'k'.repeat(256)],
    ['a key with a space', 'two words'],
    ['a key with a non-ASCII character', 'cl\u00e9'],
  ])('%s answers 400 in the envelope and writes nothing', async (_n, key) => {
    const org = await newOrg();
    const res = await post(org, body(), key);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: 400, message: expect.stringContaining('Idempotency-Key must be 1 to 255 visible ASCII characters') }] });
    expect(await credentials(org)).toBe(0);
  });

  test('the header sent twice is named as such, not as one malformed key, and nothing is written', async () => {
    const org = await newOrg();
    const json = JSON.stringify(body());
    const head = [
      `POST ${PATH} HTTP/1.1`, `Host: ${new URL(r.url).host}`, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(json)}`,
      ...Object.entries(slashidHeaders(org)).map(([k, v]) => `${k}: ${v}`), 'Idempotency-Key: a', 'Idempotency-Key: b', 'Connection: close',
    ].join('\r\n');
    const answer = await rawExchangeWith(Number(new URL(r.url).port), `${head}\r\n\r\n${json}`);
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({ meta: {}, errors: [{ httpcode: 400, message: 'Idempotency-Key is given 2 times; send it once.' }] });
    expect(await credentials(org)).toBe(0);
  });

  test('a key of 255 visible characters is accepted', async () => {
    const org = await newOrg();
    const key = '!~'.repeat(127) + 'z';
    expect((await post(org, body(), key)).status).toBe(201);
    expect((await post(org, body(), key)).headers.get('idempotent-replayed')).toBe('true');
  });
});

test('ten concurrent POSTs with one key create one credential and all answer with its id', async () => {
  const org = await newOrg();
  const answers = await Promise.all(Array.from({ length: 10 }, () => post(org, body(), 'burst')));
  expect(answers.map((a) => a.status)).toEqual(Array(10).fill(201));
  const ids = new Set(answers.map((a) => a.body.result.id));
  expect(ids.size).toBe(1);
  expect(answers.filter((a) => a.headers.get('idempotent-replayed') === null)).toHaveLength(1);
  expect(await credentials(org)).toBe(1);
});

/** How many statements of other connections now wait on a lock `locker`'s connection holds (see blocksAnother). */
async function waitingOn(locker: Client): Promise<number> {
  await locker.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await locker.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))');
  return rows[0]?.n ?? 0;
}

test('a retry that arrives while the first request is still writing waits for it and replays it, though the IdP is down by then', async () => {
  const org = await newOrg();
  idp.set('in-flight.xml', fixture('okta.xml'));
  const payload = { idp_metadata_url: idp.url('in-flight.xml') };
  const locker = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await locker.connect();
  try {
    // The key's per-row lock, held here: the first request fetches, then its write waits for it (under way).
    await locker.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [`idempotency_keys:${idempotencyRowId(org.id, CREATE_ENDPOINT, 'in-flight')}`]);
    const first = post(org, payload, 'in-flight');
    expect(await eventually(async () => (await waitingOn(locker)) === 1, 15_000, 20)).toBe(true);
    idp.remove('in-flight.xml');
    // The retry finds no key yet and its own fetch fails; it must wait for the first write, not answer that.
    let answered = false;
    const retry = post(org, payload, 'in-flight').finally(() => (answered = true));
    expect(await eventually(async () => answered || (await waitingOn(locker)) === 2, 15_000, 20)).toBe(true);
    await locker.query('SELECT pg_advisory_unlock_all()');
    const [one, two] = await Promise.all([first, retry]);
    expect(one.status).toBe(201);
    expect({ status: two.status, replayed: two.headers.get('idempotent-replayed'), id: two.body.result?.id }).toEqual({ status: 201, replayed: 'true', id: one.body.result.id });
    expect(two.headers.get('x-change-id')).toBe(one.headers.get('x-change-id'));
    expect(await credentials(org)).toBe(1);
  } finally {
    await locker.end();
  }
});

describe('expiry', () => {
  test('a key whose row has expired starts a new request', async () => {
    const org = await newOrg();
    const first = await post(org, body(), 'old-key');
    const id = idempotencyRowId(org.id, CREATE_ENDPOINT, 'old-key');
    await r.region.db.idempotencyKey.update({ where: { id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const fresh = await post(org, body(), 'old-key');
    expect(fresh.status).toBe(201);
    expect(fresh.headers.get('idempotent-replayed')).toBeNull();
    expect(fresh.body.result.id).not.toBe(first.body.result.id);
    expect(await credentials(org)).toBe(2);
    // The key now belongs to the new request, for another 24 h.
    const row = await r.region.db.idempotencyKey.findUniqueOrThrow({ where: { id } });
    expect(row.expiresAt.getTime()).toBeGreaterThan(Date.now() + 23.9 * 3600_000);
    const again = await post(org, { ...body(), label: 'changed' }, 'old-key');
    expect(again.status).toBe(422);
  });

  test('an all_regions retry of a key stored over an hour ago whose change is no longer known answers the stored 201 at once', async () => {
    const org = await newOrg();
    const first = await post(org, body('long ago'), 'hour-old');
    expect(first.status).toBe(201);
    const changeId = first.headers.get('x-change-id') as string;
    // Stored 2 h ago (its lifetime counts from then), and its change's records gone since: the outbox row and
    // the ack record are kept for an hour after every region acked the change, then deleted.
    const id = idempotencyRowId(org.id, CREATE_ENDPOINT, 'hour-old');
    await r.region.db.idempotencyKey.update({ where: { id }, data: { expiresAt: new Date(Date.now() + 22 * 3600_000) } });
    await r.region.db.$executeRawUnsafe('DELETE FROM replication_outbox WHERE change_id = $1::uuid', changeId);
    await r.region.replication.redis.del(r.region.replication.keys.ack(changeId));
    const retry = await post(org, body('long ago'), 'hour-old', { 'SlashID-Required-Consistency': 'all_regions', 'SlashID-Required-Consistency-Timeout': '2' });
    // Not a 408 "keeps replicating" for a change nothing tracks any more: the stored answer is all there is.
    expect([retry.status, retry.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect(retry.body.result.id).toBe(first.body.result.id);
  });

  test('an expired key may be reused with a different body', async () => {
    const org = await newOrg();
    await post(org, body('before'), 'recycled');
    await r.region.db.idempotencyKey.update({ where: { id: idempotencyRowId(org.id, CREATE_ENDPOINT, 'recycled') }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const res = await post(org, body('after'), 'recycled');
    expect(res.status).toBe(201);
    expect(res.body.result.label).toBe('after');
  });

  test('the cleanup deletes keys expired for more than a day and keeps the others', async () => {
    const org = await newOrg();
    for (const key of ['long-gone', 'just-expired', 'live']) await post(org, body(key), key);
    const expire = (key: string, ms: number) =>
      r.region.db.idempotencyKey.update({ where: { id: idempotencyRowId(org.id, CREATE_ENDPOINT, key) }, data: { expiresAt: new Date(Date.now() - ms) } });
    await expire('long-gone', 25 * 3600_000);
    await expire('just-expired', 3600_000);
    const deleted = await new IdempotencyKeyCleanup(r.region.db, r.region.log).runOnce();
    expect(deleted).toBeGreaterThanOrEqual(1);
    const left = await r.region.db.idempotencyKey.findMany({ where: { orgId: org.id }, select: { idempotencyKey: true } });
    expect(left.map((k) => k.idempotencyKey).sort()).toEqual(['just-expired', 'live']);
    expect(await credentials(org)).toBe(3);
  });

  test('one cleanup pass deletes a backlog larger than its batch (1,000), batch after batch', async () => {
    const org = await newOrg();
    await post(org, body('template'), 'template');
    // 1,500 copies of the key's row, expired three days ago (as after a week without cleanup).
    await r.region.db.$executeRawUnsafe(
      `INSERT INTO idempotency_keys (id, org_id, endpoint, idempotency_key, request_hash, response_status, response_body, change_id, created_at, expires_at, updated_at, version, created_version, origin_region)
       SELECT md5('bulk-' || i), k.org_id, k.endpoint, 'bulk-' || i, k.request_hash, k.response_status, k.response_body, k.change_id, k.created_at, now() - interval '3 days', k.updated_at, k.version, k.created_version, k.origin_region
         FROM idempotency_keys k, generate_series(1, 1500) i WHERE k.id = $1`,
      idempotencyRowId(org.id, CREATE_ENDPOINT, 'template'),
    );
    const deleted = await new IdempotencyKeyCleanup(r.region.db, r.region.log).runOnce();
    expect(deleted).toBeGreaterThanOrEqual(1500);
    expect(await r.region.db.idempotencyKey.count({ where: { idempotencyKey: { startsWith: 'bulk-' } } })).toBe(0);
    expect(await r.region.db.idempotencyKey.count({ where: { orgId: org.id } })).toBe(1);
  });

  test('a key reused while a cleanup pass waits on its row keeps its fresh row: the pass skips it', async () => {
    const org = await newOrg();
    await post(org, body('reused'), 'reused-under-cleanup');
    const id = idempotencyRowId(org.id, CREATE_ENDPOINT, 'reused-under-cleanup');
    await r.region.db.idempotencyKey.update({ where: { id }, data: { expiresAt: new Date(Date.now() - 25 * 3600_000) } });
    const fresh = new Date(Date.now() + 24 * 3600_000);
    let pass: Promise<number> | undefined;
    // The reuse's write holds the row (as runOnce's lock and put do) while the pass's DELETE has already
    // chosen it as past the cutoff; the reuse commits once the DELETE waits on the row.
    await r.region.db.$transaction(
      async (tx) => {
        await tx.idempotencyKey.update({ where: { id }, data: { expiresAt: fresh } });
        pass = new IdempotencyKeyCleanup(r.region.db, r.region.log).runOnce();
        const waiting = await eventually(async () => {
          const rows = await r.region.db.$queryRawUnsafe<{ n: number }[]>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM idempotency_keys%'`,
          );
          return rows[0]?.n === 1;
        });
        expect(waiting).toBe(true);
      },
      { timeout: 30_000 },
    );
    await pass;
    const row = await r.region.db.idempotencyKey.findUnique({ where: { id } });
    expect(row?.expiresAt.toISOString()).toBe(fresh.toISOString());
  });

  test('a cleanup stopped during a pass schedules no further pass (it would keep a stopped region running)', async () => {
    let passes = 0;
    let finish: (n: number) => void = () => undefined;
    let started: () => void = () => undefined;
    const inPass = new Promise<void>((resolve) => (started = resolve));
    // A database stand-in, so that the pass can be held while stop() is called.
    const db = {
      $executeRawUnsafe: () => {
        passes++;
        started();
        return new Promise<number>((resolve) => (finish = resolve));
      },
    } as unknown as Db;
    const cleanup = new IdempotencyKeyCleanup(db, r.region.log, { intervalMs: 1 });
    cleanup.start();
    await inPass;
    const stopped = cleanup.stop();
    finish(0);
    await stopped;
    // A pass scheduled after the stop would be due within 1 ms, before this timer.
    await new Promise((resolve) => setTimeout(resolve, 1));
    expect(passes).toBe(1);
  });
});
