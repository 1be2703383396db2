/** The Postgres SQLSTATE of an error from a raw query through the Prisma pg adapter, if it has one. */
export function pgCode(err: unknown): string | null {
  const cause = (err as { meta?: { driverAdapterError?: { cause?: { originalCode?: string; code?: string } } } }).meta?.driverAdapterError?.cause;
  return cause?.originalCode ?? cause?.code ?? /Code: `(\w{5})`/.exec(String((err as Error | undefined)?.message))?.[1] ?? null;
}

/** Errors that say "try again", not "this is wrong": deadlock, serialization failure, lock timeout. */
export function isTransient(err: unknown): boolean {
  return ['40P01', '40001', '55P03'].includes(pgCode(err) ?? '');
}
