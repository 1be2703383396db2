/**
 * SlashID API-key authentication: SlashID-API-Key for the org in SlashID-OrgID, or for one of its ancestors.
 * It lives with the feature that owns organizations and their keys, so src/http/ stays plumbing.
 */
import type { RequestHandler, Response } from 'express';
import type { Db } from '../db/client';
import { badRequest, forbidden, shownHeader, unauthorized } from '../http/errors';
import { isUuid } from '../http/validate';
import { authenticateApiKey } from './service';
import { isSelfOrAncestor } from './store';

/** Resolves the organization the request acts on, or answers 401/400/403. */
export function slashidAuth(db: Db): RequestHandler {
  return async (req, res, next) => {
    const apiKey = req.get('SlashID-API-Key');
    if (!apiKey) throw unauthorized('Missing SlashID-API-Key header.');
    const keyOrg = await authenticateApiKey(db, apiKey);
    if (!keyOrg) throw unauthorized('The API key in SlashID-API-Key is not valid here: it is not a current key of an organization this region holds. A key created or rotated in another region moments ago may not have reached this one yet (a create or rotation with all_regions answers once every region has it).');
    const orgId = req.get('SlashID-OrgID');
    if (!orgId) throw badRequest('Missing SlashID-OrgID header.');
    if (!isUuid(orgId)) throw badRequest(`SlashID-OrgID must be an organization ID (a UUID), got ${shownHeader(orgId)}.`);
    // authenticateApiKey only returns organizations that exist, so the common case needs no query.
    if (keyOrg !== orgId.toLowerCase() && !(await isSelfOrAncestor(db, keyOrg, orgId.toLowerCase()))) {
      throw forbidden(`This API key is not valid for organization ${orgId}.`);
    }
    res.locals.orgId = orgId.toLowerCase();
    next();
  };
}

export function orgIdOf(res: Response): string {
  const id: unknown = res.locals.orgId;
  if (typeof id !== 'string') throw new Error('slashidAuth did not run before this handler');
  return id;
}
