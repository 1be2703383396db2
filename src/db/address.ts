/**
 * A databaseUrl as the database it names, for messages and for telling two regions' databases apart: host
 * (lower case), port (5432 when none) and name, never the user, password or options. A URL that does not
 * parse is shown without what stands before an `@`.
 */
export function databaseAddress(databaseUrl: string): string {
  try {
    const u = new URL(databaseUrl);
    return `${u.hostname.toLowerCase()}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return databaseUrl.replace(/\/\/[^/]*@/, '//');
  }
}
