import crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import { unauthorized } from './errors';

/** `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time. */
export function adminAuth(adminToken: string): RequestHandler {
  return (req, _res, next) => {
    const m = /^Bearer\s+(.+)$/i.exec(req.get('authorization') ?? '');
    if (!m?.[1] || !secretEquals(m[1].trim(), adminToken)) {
      throw unauthorized('Admin API: send Authorization: Bearer <ADMIN_TOKEN>.');
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
