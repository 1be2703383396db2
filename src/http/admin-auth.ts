import type { RequestHandler } from 'express';
import { secretEquals } from '../organizations/api-keys';
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
