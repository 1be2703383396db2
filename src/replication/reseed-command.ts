/**
 * The `npm run reseed` command a region quotes for an operator to run for it (its start line while it is joining,
 * region.ts; its start check on a database restored or replaced, restore-check.ts): with the regions file it runs
 * with (REGIONS_CONFIG: the command reads ./regions.config.json otherwise, and found no such region or another
 * deployment there), the REDIS_URL and REDIS_KEY_PREFIX it took from its environment (the command would
 * otherwise look in the file's Redis, under the file's prefix, and find the region not registered), and its
 * DATABASE_URL as --to-database-url (the command filled the database of the region's entry, and marked the region
 * active on a database it had not filled). The peer's database is not quoted: the region cannot know it (the peer is
 * the operator's to choose, and a peer on a DATABASE_URL of its own runs on what its environment says); the command
 * refuses a peer's entry that is not the database the peer runs on, naming --from-database-url (reseed.ts).
 */
import { ConfigError } from '../config-error';
import type { DatabaseOverride, OperatorEnv } from '../config';
import type { ConfigFile } from '../config-schema';
import { databaseAddress } from '../db/address';

/** What of the region's configuration the command needs (src/config.ts Config). */
export interface ReseedCommandConfig {
  configPath?: string;
  operatorEnv?: OperatorEnv;
}

/** What an operator types for a value: as is when the shell reads it so, else single-quoted. */
function shellWord(value: string): string {
  return /^[\w./:@%+,=-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * Whether `url` holds a secret, and is quoted as a placeholder: its password; for Redis its user name too (an ACL
 * user), where a Postgres URL's user name is no secret (the operator needs it). One that does not parse, to be safe.
 */
function holdsSecret(url: string, userIsSecret: boolean): boolean {
  try {
    const u = new URL(url);
    return u.password !== '' || (userIsSecret && u.username !== '') || (userIsSecret ? /password|username/i : /password/i).test(u.search);
  } catch {
    return true;
  }
}

/**
 * What the operator puts in, single-quoted: pasted unchanged, the command refuses it by name (exit 2); bare, bash read
 * `<a caught-up region>` as a redirect from a file `a` (`No such file or directory`), and a URL typed in between the
 * quotes keeps its `&` and `?` from the shell.
 */
const placeholder = (what: string): string => `'<${what}>'`;

/** The command that re-seeds `to` from `from` (a placeholder when the peer is for the operator to choose). */
export function reseedCommand(config: ReseedCommandConfig, to: string, from = placeholder('a caught-up region')): string {
  const env: string[] = [];
  if (config.configPath) env.push(`REGIONS_CONFIG=${shellWord(config.configPath)}`);
  const { REDIS_URL, REDIS_KEY_PREFIX, DATABASE_URL } = config.operatorEnv ?? {};
  // A URL with a password is not logged: the operator puts in the one the region runs with.
  if (REDIS_URL) env.push(`REDIS_URL=${holdsSecret(REDIS_URL, true) ? placeholder('the REDIS_URL this region runs with') : shellWord(REDIS_URL)}`);
  if (REDIS_KEY_PREFIX) env.push(`REDIS_KEY_PREFIX=${shellWord(REDIS_KEY_PREFIX)}`);
  // A flag, not DATABASE_URL: the command reads no DATABASE_URL (one exported for another tool would be re-seeded).
  const database = DATABASE_URL ? ` --to-database-url ${holdsSecret(DATABASE_URL, false) ? placeholder('the DATABASE_URL this region runs with') : shellWord(DATABASE_URL)}` : '';
  return [...env, `npm run reseed -- --from ${from} --to ${to}${database}`].join(' ');
}

/**
 * Another operator command as a command quotes it (`npm run members -- remove <region> --force`, say): with the
 * regions file it was run with, so that it works as written from any directory (it quoted `remove <region>`).
 */
export function operatorCommand(configPath: string, script: string, args: string): string {
  return `REGIONS_CONFIG=${shellWord(configPath)} npm run ${script} -- ${args}`;
}

/**
 * The configs of the peer (`from`) and the target (`to`), or why they cannot be re-seeded one from the other. Here,
 * not in reseed.ts, so that the command says these mistakes before it loads the re-seed's Prisma, pg and ioredis.
 * `given`: the databases the command line gave over their regions' entries (already in `file`), checked likewise.
 */
export function regionsOf(file: Pick<ConfigFile, 'regions'>, from: string, to: string, given: readonly DatabaseOverride[] = []) {
  const source = file.regions.find((r) => r.id === from);
  const target = file.regions.find((r) => r.id === to);
  // Usage mistakes (exit 2, scripts/usage.ts failureStatus), found before anything is connected to.
  if (!source || !target) throw new ConfigError(`unknown region: ${!source ? from : to} (known: ${file.regions.map((r) => r.id).join(', ')})`);
  if (from === to) throw new ConfigError('--from and --to must name two different regions');
  const ownerOf = (region: string, url: string) => file.regions.find((r) => r.id !== region && databaseAddress(r.databaseUrl) === databaseAddress(url));
  // A database given as the peer's (or an origin's) that is another region's would be read as this one's: its rows,
  // progress and outbox taken for the peer's (the target's own entry pasted as --from-database-url, say). Checked
  // before the target, whose check would otherwise blame the target for the flag's mistake.
  for (const g of given.filter((o) => o.region !== to)) {
    const other = ownerOf(g.region, g.url);
    if (other) throw new ConfigError(`the database given with ${g.flag} for ${g.region} (${databaseAddress(g.url)}) is ${other.id}'s in the regions config; each region has its own. Nothing was done: name the database ${g.region} runs on`);
  }
  // The re-seed records the database it fills as the target's and writes its progress there: filling another
  // region's (a --to-database-url pasted from the peer's entry, say) left two regions on one database, each taking
  // the other's rows for its own (scripts/cluster.ts refuses such a file for the same reason).
  const address = databaseAddress(target.databaseUrl);
  const owner = ownerOf(to, target.databaseUrl);
  if (owner) {
    throw new ConfigError(
      `the database to re-seed as ${to}'s (${address}) is ${owner.id}'s in the regions config; each region needs its own. Nothing was done: name the database ${to} runs on (--to-database-url, or its databaseUrl)`,
    );
  }
  return { source, target };
}
