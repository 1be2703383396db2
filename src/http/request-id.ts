import crypto from 'node:crypto';
import type { RequestHandler, Response } from 'express';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,100}$/;

/** Takes the caller's X-Request-Id when it is sane, otherwise makes one, and echoes it back. */
export function requestId(): RequestHandler {
  return (req, res, next) => {
    const given = req.get('x-request-id');
    const id = given && SAFE_ID.test(given) ? given : crypto.randomUUID();
    res.locals.requestId = id;
    res.locals.startedAt = Date.now();
    res.setHeader('X-Request-Id', id);
    // Every answer is JSON (or the console's HTML, which sets its type itself): no browser may guess another
    // type from a body that quotes a request's input (helper-131).
    res.setHeader('X-Content-Type-Options', 'nosniff');
    // No cache keeps an answer unless its route says otherwise (the JWKS, the console's assets): the
    // organization a request acts for is in its headers (SlashID-OrgID, the API key, a bearer token), not in
    // its URL, and a shared cache in front that keys by URL (Varnish's defaults keep a 200 for two minutes
    // whatever its headers but Authorization and Cookie) would hand one tenant's answer to the next caller.
    res.setHeader('Cache-Control', 'no-store');
    next();
  };
}

export function getRequestId(res: Response): string {
  return typeof res.locals.requestId === 'string' ? res.locals.requestId : 'unknown';
}

/** When the request arrived: consistency deadlines count from here. */
export function startedAt(res: Response): number {
  return typeof res.locals.startedAt === 'number' ? res.locals.startedAt : Date.now();
}
