/**
 * A database call bounded in time: rejects with `message` when `p` has not settled within `ms` (the call
 * itself goes on; the caller has stopped waiting for it). For probes of a database that may not answer
 * at all (a connection the network stopped carrying raises no error for hours).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, message = `the database did not answer within ${ms} ms`): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
