/** The Postgres SQLSTATE of an error from a raw query (through the Prisma pg adapter, or pg itself), if it has one. */
export function pgCode(err: unknown): string | null {
  const cause = (err as { meta?: { driverAdapterError?: { cause?: { originalCode?: string; code?: string } } } }).meta?.driverAdapterError?.cause;
  const own = (err as { code?: unknown } | undefined)?.code;
  return cause?.originalCode ?? cause?.code ?? /Code: `(\w{5})`/.exec(String((err as Error | undefined)?.message))?.[1] ??
    (typeof own === 'string' && /^[0-9A-Z]{5}$/.test(own) ? own : null);
}

/** Errors that say "try again", not "this is wrong": deadlock, serialization failure, lock timeout. */
export function isTransient(err: unknown): boolean {
  return ['40P01', '40001', '55P03'].includes(pgCode(err) ?? '');
}
