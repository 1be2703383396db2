import { Router, type Request } from 'express';
import type { Db } from '../db/client';
import { jsonBody, noBody } from '../http/body';
import { badRequest, notFound } from '../http/errors';
import { noQuery } from '../http/no-query';
import { pageQueryParser } from '../http/page-query';
import { startedAt } from '../http/request-id';
import { describeErrors, isUuid, shownId } from '../http/validate';
import { adminFollowUp, parseConsistency, setChangeId, writeWithConsistency } from '../replication/consistency';
import type { Replicator } from '../replication/replicator';
import { ORGANIZATION_FILTERS, validateCreateOrganization } from './schema';
import { createOrganization, deleteOrganization, rotateApiKey } from './service';
import { findOrganization, listOrganizations } from './store';

/**
 * An organization's create and its key rotation answer with an API key that is stored hashed only, so a replay
 * could not give the key back; its delete keeps no answer to replay (a retry of one that committed answers 404).
 * A client that counts on Idempotency-Key to retry safely is told, not ignored (a retry would make a second
 * organization, revoke the key the lost answer carried, or read a 404 where it expected the replayed 204).
 */
const KEY_IN_ANSWER =
  'the answer carries an API key that is stored only as a hash, so a replay could not return it. ' +
  'Send the request without it; if an answer is lost, rotate the organization\'s key (POST /admin/organizations/{id}/api-keys) for a working one.';
const DELETE_NOT_REPLAYED =
  'a delete is not replayed. Send the request without it; a retry of a delete that committed answers 404 (the organization is gone).';

function refuseIdempotencyKey(req: Request, why: string): void {
  if (req.get('Idempotency-Key') !== undefined) throw badRequest(`Idempotency-Key is not taken here: ${why}`);
}

const listPage = pageQueryParser('Organizations', ORGANIZATION_FILTERS);

const organizationView = (o: { id: string; name: string; parentId: string | null; createdAt: Date }) => ({
  id: o.id,
  name: o.name,
  parent_id: o.parentId,
  created_at: o.createdAt.toISOString(),
});

/** Admin endpoints for organizations and their API keys (mounted behind adminAuth). */
export function organizationAdminRoutes({ db, repl }: { db: Db; repl: Replicator }): Router {
  const router = Router();

  router.post('/admin/organizations', jsonBody(), async (req, res) => {
    const consistency = parseConsistency(req, startedAt(res));
    refuseIdempotencyKey(req, KEY_IN_ANSWER);
    if (!validateCreateOrganization(req.body)) {
      throw badRequest(`Invalid request body: ${describeErrors(validateCreateOrganization.errors).join('; ')}.`);
    }
    const body = req.body;
    const { value } = await writeWithConsistency(
      repl, consistency, () => createOrganization(db, repl, body), (v) => v, setChangeId(res), adminFollowUp,
    );
    res.status(201).json(value);
  });

  router.get('/admin/organizations', async (req, res) => {
    const { limit, offset, filters } = listPage(req.query as Record<string, unknown>);
    const { rows, total } = await listOrganizations(db, { parentId: filters.parent_id?.toLowerCase(), name: filters.name }, limit, offset);
    res.json({ organizations: rows.map(organizationView), pagination: { limit, offset, total_count: total } });
  });

  router.get('/admin/organizations/:id', noQuery(), async (req, res) => {
    const id = String(req.params.id);
    const org = isUuid(id) ? await findOrganization(db, id.toLowerCase()) : null;
    if (!org) throw notFound(`Organization ${shownId(id)} not found.`);
    res.json(organizationView(org));
  });

  // Deletes the organization, its keys and its data (service.ts deleteOrganization). Not idempotent by key
  // (refused, as the other admin writes refuse it): a retry of a delete that committed answers 404.
  router.delete('/admin/organizations/:id', noBody(), async (req, res) => {
    const consistency = parseConsistency(req, startedAt(res));
    refuseIdempotencyKey(req, DELETE_NOT_REPLAYED);
    const id = String(req.params.id);
    if (!isUuid(id)) throw notFound(`Organization ${shownId(id)} not found.`);
    await writeWithConsistency(repl, consistency, () => deleteOrganization(repl, id.toLowerCase()), () => undefined, setChangeId(res), adminFollowUp);
    res.status(204).end();
  });

  router.post('/admin/organizations/:id/api-keys', noBody(), async (req, res) => {
    const consistency = parseConsistency(req, startedAt(res));
    refuseIdempotencyKey(req, KEY_IN_ANSWER);
    const id = String(req.params.id);
    if (!isUuid(id)) throw notFound(`Organization ${shownId(id)} not found.`);
    const { value } = await writeWithConsistency(
      repl, consistency, () => rotateApiKey(db, repl, id.toLowerCase()), (v) => v, setChangeId(res), adminFollowUp,
    );
    res.status(201).json(value);
  });

  return router;
}
