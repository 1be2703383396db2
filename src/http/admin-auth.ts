import crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import { unauthorized } from './errors';
import { sentOnce } from './header-count';

/**
 * `Authorization: Bearer <ADMIN_TOKEN>` (or one of ADMIN_TOKEN_ACCEPTED: a rotation's), compared in constant
 * time with every accepted token (no early exit: the time does not say which one matched, or how many there are
 * before it).
 */
export function adminAuth(adminTokens: string | readonly string[]): RequestHandler {
  const tokens = typeof adminTokens === 'string' ? [adminTokens] : adminTokens;
  return (req, _res, next) => {
    // Node keeps the first of two Authorization headers; a proxy in front may have checked the other.
    sentOnce(req, 'authorization', unauthorized, 'Admin API: the Authorization header');
    const header = req.get('authorization');
    const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
    const sent = m?.[1]?.trim();
    let ok = false;
    if (sent) for (const t of tokens) ok = secretEquals(sent, t) || ok;
    if (!ok) {
      // Which of the three it was says nothing of the token: only what the caller sent. A wrong token is the
      // usual mistake (the secrets of another config's cluster, or from before a rotation), and "send one" would
      // read as if none had arrived.
      if (!header) throw unauthorized('Admin API: send Authorization: Bearer <ADMIN_TOKEN>.');
      if (!sent) throw unauthorized('Admin API: the Authorization header must be "Bearer <ADMIN_TOKEN>".');
      throw unauthorized(
        "Admin API: the Bearer token is not this region's admin token (ADMIN_TOKEN, or one of ADMIN_TOKEN_ACCEPTED). " +
          'A cluster started with npm run cluster keeps it in .cluster/<its config file\'s name>.env (.cluster/regions.config.env for regions.config.json).',
      );
    }
    next();
  };
}

/** Constant-time equality of two secrets of any length: hashing first makes the lengths equal. */
function secretEquals(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb);
}
