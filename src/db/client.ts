import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client';

export type Db = PrismaClient;
/** The client handed to a transaction callback. */
export type TxClient = Parameters<Parameters<PrismaClient['$transaction']>[0]>[0];

/**
 * Raw SQL reads, all the operator's status queries need: a Prisma client, or a plain pg pool in the operator
 * listener's thread (src/operator), where a second Prisma client would cost ~90 MB.
 */
export interface SqlReader {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
}

export function createDb(databaseUrl: string, opts: { poolSize?: number } = {}): Db {
  const adapter = new PrismaPg({ connectionString: databaseUrl, max: opts.poolSize ?? 10 });
  return new PrismaClient({ adapter });
}
