/**
 * Settings every database session of the service starts with, passed to Postgres as libpq's `options`
 * (`-c name=value`) after any the operator gives (in the URL's `options`, else in PGOPTIONS).
 *
 * - `jit=off`: Postgres compiles a query with LLVM when its estimated cost passes `jit_above_cost`, and the
 *   estimate of the relay's and the horizon's queries over the outbox jumps past it whenever the table's
 *   statistics lag behind a burst of writes (before autoanalyze catches up). Measured after a 100,000-change
 *   backlog: the relay's look for unpublished rows ran in 1.6 ms and spent 155 ms compiling, twice a second,
 *   on a core the appliers needed. None of the service's statements runs long enough to gain from it.
 */
import type { ClientConfig } from 'pg';
import { parse } from 'pg-connection-string';

const SESSION_OPTIONS = '-c jit=off';

/**
 * The connection settings of `databaseUrl` as node-postgres reads them (its own parser, so a URL means
 * exactly what it meant before), with the service's session settings added to `options`. Passed instead
 * of the URL: pg lets a URL's `options` override a config's, so the URL itself is not rewritten.
 */
export function sessionConfig(databaseUrl: string): ClientConfig {
  const parsed = parse(databaseUrl);
  const given = parsed.options ?? process.env.PGOPTIONS;
  return { ...(parsed as ClientConfig), options: [given, SESSION_OPTIONS].filter(Boolean).join(' ') };
}
