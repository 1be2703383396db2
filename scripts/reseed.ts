/**
 * `npm run reseed -- --from <peer region> --to <region>`: re-seeds a region whose consumer group fell
 * behind the stream cap (GET /admin/replication lists it under needs_reseed) from a peer region. Reads
 * REGIONS_CONFIG (default ./regions.config.json), with REDIS_URL and REDIS_KEY_PREFIX over the file's as a region
 * takes them (withRedisOverrides), --to-database-url over the databaseUrl of the --to region, --from-database-url over
 * the peer's and `--database-url <region>=<url>` over another origin's (withDatabaseOverrides: a region started with
 * DATABASE_URL runs on that database, and quotes it so as --to-database-url; DATABASE_URL itself is not read, as one
 * exported for another tool would re-seed that tool's database), and REPLICATION_KEYS when
 * the file's `ackSignatures` is `sign` or `require` (from the environment, else from the cluster's secrets file that
 * `npm run cluster` keeps); prints what it copied as JSON.
 * Every region's Redis must answer: one that cannot be reached is named at once, with why (src/redis-reach.ts), exit 1.
 * See src/replication/reseed.ts.
 */
import { ConfigError } from '../src/config-error';
import type { DatabaseOverride } from '../src/config';
import type { ConfigFile } from '../src/config-schema';
import { answerHelp, failureStatus, quietOnClosedStdout } from './usage';

/** The flags that take a value, each at most once; `--force` takes none, `--database-url` one per origin. */
const VALUE_FLAGS = ['from', 'to', 'to-database-url', 'from-database-url', 'wait'] as const;
type ValueFlag = (typeof VALUE_FLAGS)[number];
/** The flag given once per origin (but the peer and the target) that runs on a database of its own: `<region>=<url>`. */
const ORIGIN_DATABASE_FLAG = 'database-url';

/**
 * The arguments, each flag at most once (--database-url once per region, databaseOverrides) and each with its value;
 * null when they do not parse. A flag given twice took the first silently, and one it did not know
 * (`--to-database-url=…`, a misspelling) was ignored: the re-seed then filled the database of the region's entry, the
 * one the flag was given to avoid.
 */
function parseArgs(args: readonly string[]): { values: Partial<Record<ValueFlag, string>>; originDatabases: string[]; force: boolean } | null {
  const values: Partial<Record<ValueFlag, string>> = {};
  const originDatabases: string[] = [];
  let force = false;
  for (let i = 0; i < args.length; i++) {
    const name = /^--(.+)$/.exec(args[i] as string)?.[1];
    const flag = VALUE_FLAGS.find((f) => f === name);
    const value = args[i + 1];
    const hasValue = value !== undefined && !value.startsWith('--');
    if (name === 'force' && !force) force = true;
    else if (flag && values[flag] === undefined && hasValue) values[flag] = args[++i];
    else if (name === ORIGIN_DATABASE_FLAG && hasValue) originDatabases.push(args[++i] as string);
    else return null;
  }
  return { values, originDatabases, force };
}

/**
 * The databases the command line gives over the regions' entries. A `--database-url` that is not `<region>=<url>`, names
 * a region the config does not, names one twice, or names the peer or the target (their own flags give theirs) is a
 * usage mistake (ConfigError, exit 2): the re-seed would otherwise read that origin's entry, the database it was given
 * to avoid.
 */
function databaseOverrides(file: Pick<ConfigFile, 'regions'>, from: string, to: string, values: Partial<Record<ValueFlag, string>>, originDatabases: readonly string[]): DatabaseOverride[] {
  const given: DatabaseOverride[] = [];
  if (values['to-database-url'] !== undefined) given.push({ region: to, url: values['to-database-url'], flag: '--to-database-url' });
  if (values['from-database-url'] !== undefined) given.push({ region: from, url: values['from-database-url'], flag: '--from-database-url' });
  for (const arg of originDatabases) {
    const [, region = '', url = ''] = /^([^=]*)=(.*)$/.exec(arg) ?? [];
    const flag = `--${ORIGIN_DATABASE_FLAG}`;
    if (!region || !url) throw new ConfigError(`${flag} takes <region>=<the database that region runs on> (got '${arg}')`);
    if (!file.regions.some((r) => r.id === region)) throw new ConfigError(`${flag}: unknown region ${region} (known: ${file.regions.map((r) => r.id).join(', ')})`);
    if (region === from || region === to) throw new ConfigError(`${flag}: ${region} is the ${region === from ? 'peer' : 'target'}; give its database with --${region === from ? 'from' : 'to'}-database-url`);
    if (given.some((g) => g.region === region)) throw new ConfigError(`${flag}: ${region} is given twice`);
    given.push({ region, url, flag });
  }
  return given;
}

const USAGE = 'usage: npm run reseed -- --from <peer region> --to <region to re-seed> [--to-database-url <the database the region runs on, when not its entry\'s>] [--from-database-url <the database the peer runs on, when not its entry\'s>] [--database-url <another region>=<the database it runs on, when not its entry\'s>]... [--wait <seconds the peer may take to catch up, default 30>] [--force]';

async function main(): Promise<void> {
  answerHelp(process.argv.slice(2), USAGE);
  quietOnClosedStdout();
  const parsed = parseArgs(process.argv.slice(2));
  const { from, to, wait } = parsed?.values ?? {};
  if (!parsed || !from || !to) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }
  // Loaded once the arguments parse (`--help` and a usage mistake load none of it), and the re-seed's own
  // modules (Prisma, pg, ioredis: ~0.2 s of CPU) only once the config and the regions named are found usable.
  const { readRegionsConfig, regionsConfigPath, withDatabaseOverrides, withRedisOverrides } = await import('../src/config');
  const { scriptSigning } = await import('./cluster-secrets');
  const { regionsOf } = await import('../src/replication/reseed-command');
  const configPath = regionsConfigPath();
  try {
    const entries = withRedisOverrides(readRegionsConfig().file);
    const given = databaseOverrides(entries, from, to, parsed.values, parsed.originDatabases);
    const file = withDatabaseOverrides(entries, given);
    if (wait !== undefined && !/^\d+$/.test(wait)) throw new ConfigError(`--wait takes whole seconds (got '${wait}')`);
    // In `sign` and `require` modes the target's membership entry is written signed, and in `require` the
    // peer's acks count only when signed: both take REPLICATION_KEYS.
    const signing = scriptSigning(file, configPath);
    // Usage mistakes (exit 2) before any Redis is asked.
    regionsOf(file, from, to, given);
    const { checkRedisReachable, deploymentRedis } = await import('../src/redis-reach');
    const { REPLICATED_TABLES } = await import('../src/tables');
    const { reseed } = await import('../src/replication/reseed');
    // Every region's Redis, asked once before anything is created or read: one that refuses connections is
    // named at once (the re-seed's own connections wait out their commands' bound, then say "Command timed out").
    await checkRedisReachable(deploymentRedis(file, configPath));
    const result = await reseed(file, from, to, REPLICATED_TABLES, {
      force: parsed.force,
      ...(wait !== undefined ? { waitMs: Number(wait) * 1000 } : {}),
      ...(signing ? { signing } : {}),
      given: new Map(given.map((g) => [g.region, g.flag])),
    });
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (err) {
    process.stderr.write(`reseed failed: ${(err as Error).message}\n`);
    process.exit(failureStatus(err));
  }
}

void main();
