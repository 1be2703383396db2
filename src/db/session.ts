/**
 * Settings every connection of the service starts its session with, carried in the connection string's
 * `options` (libpq's `-c name=value`, kept after any the operator's URL already gives).
 *
 * - `jit=off`: Postgres compiles a query with LLVM when its estimated cost passes `jit_above_cost`, and the
 *   estimate of the relay's and the horizon's queries over the outbox jumps past it whenever the table's
 *   statistics lag behind a burst of writes (before autoanalyze catches up). Measured after a 100,000-change
 *   backlog: the relay's look for unpublished rows ran in 1.6 ms and spent 155 ms compiling, twice a second,
 *   on a core the appliers needed. None of the service's statements runs long enough to gain from it.
 */
const SESSION_OPTIONS = ['-c jit=off'];

/** `databaseUrl` with the service's session settings added to its `options` parameter. */
export function withSessionSettings(databaseUrl: string): string {
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    return databaseUrl; // not a URL (a key=value string): used as given
  }
  const given = url.searchParams.get('options');
  url.searchParams.set('options', [given, ...SESSION_OPTIONS].filter(Boolean).join(' '));
  return url.toString();
}
