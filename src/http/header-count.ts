import type { Request } from 'express';
import type { AppError } from './errors';

/**
 * How many times the request sent the header `name`. Node keeps only the first of a repeated Authorization
 * (and joins others with ", "), so `req.get` alone cannot tell one from two; a proxy in front may have read
 * the other one.
 */
export function timesSent(req: Request, name: string): number {
  const lower = name.toLowerCase();
  let n = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]?.toLowerCase() === lower) n += 1;
  return n;
}

/**
 * Throws `refusal` (the dialect's 400, or 401 for credentials) when `name` was sent more than once: two values
 * are not one malformed value, and which one the client (or a proxy in front) meant is not known. The message
 * is "<said> is given N times; send it once<after>."
 */
export function sentOnce(req: Request, name: string, refusal: (message: string) => AppError, said = name, after = ''): void {
  const n = timesSent(req, name);
  if (n > 1) throw refusal(`${said} is given ${n} times; send it once${after}.`);
}
