/**
 * What an operator command says of a connection refused (ECONNREFUSED): one wording for a database the re-seed
 * cannot reach (src/replication/reseed.ts) and a Redis a command cannot reach (src/redis-reach.ts). It imports
 * nothing, so that neither adds a package to what a command loads.
 */
export const CONNECTION_REFUSED = 'connection refused: nothing listens at that address and port';
