/**
 * What the row store sends its statements through: a connection or transaction that runs raw queries, and
 * a pipelined transaction (pg-tx.ts) that sends several in one round trip.
 */

/** What the row store needs of a connection or transaction: raw queries (Prisma's clients, or pg-tx.ts). */
export interface Queryable {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>;
  /**
   * Several statements in one round trip, each run after the one before it on a snapshot of its own (a
   * pipelined transaction, pg-tx.ts): the rows of each. Absent on a transaction that sends one at a time.
   */
  batch?(statements: readonly Statement[]): Promise<unknown[][]>;
}

/** One statement and its parameters ($1, $2, …); `exec`: it returns no rows worth reading (a lock). */
export interface Statement {
  sql: string;
  values: unknown[];
  exec?: boolean;
  /**
   * Sent through a pipelined transaction (pg-tx.ts), run as a prepared statement: PREPAREd once per
   * connection, then EXECUTEd, so Postgres parses and plans it once instead of every time. For statements
   * whose text repeats (the upserts and applies of a table's column set, the outbox row); every parameter's
   * type must follow from the SQL (a cast, a function's argument).
   */
  prepare?: boolean;
}

/**
 * A transaction that sends several statements in one round trip (pg-tx.ts): each statement runs after
 * the one before it, with a snapshot of its own, and `last` commits the transaction after them. Each
 * statement's rows come back in order.
 */
export interface Pipeline {
  run(statements: readonly Statement[], last?: boolean): Promise<unknown[][]>;
}

/** Runs statements one round trip each, for a transaction that cannot send several at once. */
export function oneByOne(tx: Queryable): Pipeline {
  return {
    run: async (statements) => {
      const out: unknown[][] = [];
      for (const st of statements) {
        if (st.exec) {
          await tx.$executeRawUnsafe(st.sql, ...st.values);
          out.push([]);
        } else out.push(await tx.$queryRawUnsafe<unknown[]>(st.sql, ...st.values));
      }
      return out;
    },
  };
}
