/**
 * A local write whose transaction collides (a serialization failure or a deadlock with an apply, 40001 or
 * 40P01) runs again, up to five times in all (replicator.ts, retryCollisions): the client sees one answer.
 * The collisions are made by a trigger that fails the credential's update a set number of times (counted by
 * a sequence, which a rollback does not take back). A write that loses to a state stored before it for good
 * (a deletion another region made) is answered 409 once its attempts are spent, naming that deletion.
 */
import { Client } from 'pg';
import { AppError } from '../../src/http/errors';
import { credentialsTable } from '../../src/provider-credentials/store';
import { formatVersion, versionTime } from '../../src/replication/hlc';
import { call, createOrg, slashidHeaders } from '../support/harness';
import { startIdpServer, type IdpServer } from '../support/idp-server';
import { startInProcess, type InProcessRegion } from '../support/in-process';

const PATH = '/organizations/sso/saml/provider-credentials';
let r: InProcessRegion;
let idp: IdpServer;
let pg: Client;
let org: { id: string; api_key: string };

beforeAll(async () => {
  idp = await startIdpServer();
  r = await startInProcess('collisions', ['us-iowa'], { metadataAllowedHosts: [idp.hostPort] });
  org = await createOrg(r.url, 'collisions');
  pg = new Client({ connectionString: r.deployment.file.regions[0]?.databaseUrl });
  await pg.connect();
  await pg.query(`
    CREATE TABLE test_collisions (code text NOT NULL, times int NOT NULL);
    CREATE SEQUENCE test_collisions_made;
    CREATE FUNCTION test_collide() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE c record;
    BEGIN
      SELECT code, times INTO c FROM test_collisions LIMIT 1;
      IF FOUND AND nextval('test_collisions_made') <= c.times THEN
        RAISE EXCEPTION 'simulated collision with an apply' USING ERRCODE = c.code;
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER test_collide BEFORE UPDATE ON saml_provider_credentials FOR EACH ROW EXECUTE FUNCTION test_collide();`);
});
afterAll(async () => {
  await pg?.query('DROP TRIGGER IF EXISTS test_collide ON saml_provider_credentials').catch(() => undefined);
  await pg?.end();
  await r?.stop();
  await idp?.close();
});

/** The next `times` updates of a credential fail with `code`. */
async function collide(code: string, times: number): Promise<void> {
  await pg.query('DELETE FROM test_collisions');
  await pg.query("SELECT setval('test_collisions_made', 1, false)");
  await pg.query('INSERT INTO test_collisions (code, times) VALUES ($1, $2)', [code, times]);
}
const made = async () => Number((await pg.query<{ n: string }>('SELECT last_value AS n FROM test_collisions_made')).rows[0]?.n);

test.each([['40001'], ['40P01']])('a PATCH that collides (%s) four times is run again and answers once, written once', async (code) => {
  const c = (await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'before' }, headers: slashidHeaders(org) })).body.result;
  await collide(code, 4);
  const res = await call(r.url, 'PATCH', `${PATH}/${c.id}`, { body: { label: `after ${code}` }, headers: slashidHeaders(org) });
  expect(res.status).toBe(204);
  // Four failed attempts and the fifth that wrote.
  expect(await made()).toBe(5);
  expect((await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).body.result.label).toBe(`after ${code}`);
  const outbox = await pg.query("SELECT count(*)::int AS n FROM replication_outbox WHERE event::text LIKE $1", [`%after ${code}%`]);
  expect(outbox.rows[0]?.n).toBe(1);
  await collide(code, 0);
});

test('a PATCH that collides more often than that is answered 503 with Retry-After, saying nothing was done, and nothing is written', async () => {
  const c = (await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'kept' }, headers: slashidHeaders(org) })).body.result;
  await collide('40001', 100);
  const res = await call(r.url, 'PATCH', `${PATH}/${c.id}`, { body: { label: 'never' }, headers: slashidHeaders(org) });
  expect(await made()).toBe(5);
  await collide('40001', 0);
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('1');
  expect(res.body).toEqual({ meta: {}, errors: [{ httpcode: 503, message: expect.stringContaining('nothing was done') }] });
  expect(res.body.errors[0].message).not.toMatch(/40001|simulated/);
  expect((await call(r.url, 'GET', `${PATH}/${c.id}`, { headers: slashidHeaders(org) })).body.result.label).toBe('kept');
});

test('a write that puts a row live over the deletion another region made of it is answered 409 naming that deletion, and nothing is written', async () => {
  const c = (await call(r.url, 'POST', PATH, { body: { idp_metadata_url: idp.url('okta.xml'), label: 'deleted elsewhere' }, headers: slashidHeaders(org) })).body.result;
  // europe-belgium's deletion, as the applier stores it: the row's tombstone, stamped there (same creation stamp).
  const deletion = formatVersion({ wall: Date.now(), counter: 0, region: 'europe-belgium' });
  await pg.query("UPDATE saml_provider_credentials SET label = '', deleted_at = now(), version = $2, origin_region = 'europe-belgium' WHERE id = $1", [c.id, deletion]);
  let changeId = '';
  // The region's guess of the row is the live one it created; the write runs again reading the tombstone,
  // whose deletion outranks the live row put over it (put() applies it at once: deferredPut declines).
  const err = await r.region.replication.repl
    .write(async (w) => {
      changeId = w.changeId;
      const current = await w.lock(credentialsTable, c.id);
      await w.put(credentialsTable, { ...current, label: 'revived', deleted_at: null });
    })
    .catch((e: unknown) => e);
  expect(err).toBeInstanceOf(AppError);
  expect({ status: (err as AppError).status, code: (err as AppError).code, message: (err as AppError).message }).toEqual({
    status: 409,
    code: 'write_superseded',
    message: expect.stringContaining(`a deletion made in europe-belgium at ${versionTime(deletion)} won`),
  });
  const stored = await pg.query('SELECT label, deleted_at IS NOT NULL AS deleted, version FROM saml_provider_credentials WHERE id = $1', [c.id]);
  expect(stored.rows[0]).toEqual({ label: '', deleted: true, version: deletion });
  expect((await pg.query('SELECT 1 FROM replication_outbox WHERE change_id = $1', [changeId])).rowCount).toBe(0);
});
