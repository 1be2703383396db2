import { Router } from 'express';
import type { Db } from '../db/client';
import { notFound } from '../http/errors';
import { refuseUnstorableInput } from '../http/storable-text';
import { envelope } from '../http/slashid';
import { isUuid, shownId } from '../http/validate';
import type { Replicator } from '../replication/replicator';
import { orgIdOf, slashidAuth } from './slashid-auth';
import { followsChangesOf } from './store';
import { routePrefix } from '../observability/metrics';

export const CHANGES_PATH = '/organizations/replication/changes';

/**
 * SlashID dialect: an API client follows its own change (the X-Change-Id of a write) with its own
 * credentials: per region applied, superseded or pending. Only changes of the organization in
 * SlashID-OrgID or of one of its sub-organizations (which that organization's key may act on) are shown;
 * any other change id answers 404, as an unknown one does.
 */
export function changeRoutes({ db, repl }: { db: Db; repl: Replicator }): Router {
  const router = Router();
  // Authenticated before the method is looked at, as the credentials' paths are: a caller without a valid key
  // is answered 401 whatever it asked, not 405 (README, the status table).
  router.use(CHANGES_PATH, routePrefix(), refuseUnstorableInput(), slashidAuth(db));
  router.get(`${CHANGES_PATH}/:changeId`, async (req, res) => {
    const raw = String(req.params.changeId);
    const status = isUuid(raw) ? await repl.changeStatus(raw.toLowerCase(), followsChangesOf(db, orgIdOf(res))) : null;
    if (!status) throw notFound(`Change ${shownId(raw)} is not known for this organization or its sub-organizations (or its record has expired).`);
    res.json(envelope(status));
  });
  return router;
}
