import type { Request } from 'express';

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
