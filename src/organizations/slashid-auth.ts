/**
 * SlashID API-key authentication: SlashID-API-Key for the org in SlashID-OrgID, or for one of its ancestors.
 * It lives with the feature that owns organizations and their keys, so src/http/ stays plumbing.
 */
import type { RequestHandler, Response } from 'express';
import type { Db } from '../db/client';
import { badRequest, forbidden, shownHeader, unauthorized } from '../http/errors';
import { sentOnce } from '../http/header-count';
import { isUuid } from '../http/validate';
import { authenticateApiKey } from './service';
import { isSelfOrAncestor } from './store';

/** Resolves the organization the request acts on, or answers 401/400/403. */
export function slashidAuth(db: Db): RequestHandler {
  return async (req, res, next) => {
    // Node joins a repeated header with ", ", which no key matches: say so rather than call the key invalid
    // (and a proxy in front may have judged the other one).
    sentOnce(req, 'SlashID-API-Key', unauthorized);
    const apiKey = req.get('SlashID-API-Key');
    if (!apiKey) throw unauthorized('Missing SlashID-API-Key header.');
    const keyOrg = await authenticateApiKey(db, apiKey);
    if (!keyOrg) throw unauthorized('The API key in SlashID-API-Key is not valid here: it is not a current key of an organization this region holds. A key created or rotated in another region moments ago may not have reached this one yet (a create or rotation with all_regions answers once every region has it).');
    sentOnce(req, 'SlashID-OrgID', badRequest);
    const orgId = req.get('SlashID-OrgID');
    if (!orgId) throw badRequest('Missing SlashID-OrgID header.');
    if (!isUuid(orgId)) throw badRequest(`SlashID-OrgID must be an organization ID (a UUID), got ${shownHeader(orgId)}.`);
    // authenticateApiKey only returns organizations that exist, so the common case needs no query.
    if (keyOrg !== orgId.toLowerCase() && !(await isSelfOrAncestor(db, keyOrg, orgId.toLowerCase()))) {
      // The same words whether or not that organization exists here: a key says nothing of others. The hint
      // is for a sub-organization created in another region (local_region) and used here at once.
      throw forbidden(
        `This API key is not valid for organization ${orgId}: it is the key of neither that organization nor one of its ancestors in this region. An organization created in another region moments ago may not have reached this one yet (a create with all_regions answers once every region has it).`,
      );
    }
    res.locals.orgId = orgId.toLowerCase();
    res.locals.keyOrgId = keyOrg;
    next();
  };
}

/** An organization id slashidAuth put in res.locals. */
function authenticated(res: Response, key: 'orgId' | 'keyOrgId'): string {
  const id: unknown = res.locals[key];
  if (typeof id !== 'string') throw new Error('slashidAuth did not run before this handler');
  return id;
}

export const orgIdOf = (res: Response): string => authenticated(res, 'orgId');

/**
 * The organization whose API key authenticated the request: the one it acts on (orgIdOf), or an ancestor of
 * it. Shares of the region that are per tenant (the IdP metadata fetches and host-name lookups) are counted
 * against it, so a parent's key acting on many sub-organizations holds one share, not one per sub-organization.
 */
export const keyOrgIdOf = (res: Response): string => authenticated(res, 'keyOrgId');
