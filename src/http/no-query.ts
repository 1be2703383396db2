import type { RequestHandler } from 'express';
import { badRequest, shownText } from './errors';

/**
 * A GET that takes no query parameters: one sent is a 400 naming it (the first, as a list's parser names the
 * first it does not take, page-query.ts), not ignored, so a caller's misspelt or misplaced parameter shows.
 * Its own module: the operator listener's thread uses it, and needs no validator.
 */
export function noQuery(): RequestHandler {
  return (req, _res, next) => {
    const [name] = Object.keys(req.query as Record<string, unknown>);
    if (name === undefined) return next();
    next(badRequest(`Unknown query parameter ${shownText(name)}. ${req.method === 'HEAD' ? 'GET' : req.method} ${req.path} takes no query parameters.`));
  };
}
