/**
 * `npm run members -- list | activate <region> | remove <region>`: the deployment's membership record
 * (src/replication/membership.ts), of which every region's Redis holds a copy. `list` prints, per member,
 * the regions whose Redis knows it and its state there (`known_in`), whether that copy's signature holds
 * (`verified_in`; `verification` says whether copies were checked: not in `off`, nor without the regions' key),
 * and the regions removed for good (where that is recorded); `activate` marks a joined region active (the
 * re-seed does it too; where the regions sign, with a fresh signed entry built only on the copies that verify:
 * activateSigned); `remove` takes a region out of the deployment for good — its entry in every
 * Redis, and its inbox — so the other regions stop waiting for it and delivering to it, and records the
 * removal (its credentials are adopted), in the removed region's own Redis too when `--redis-url` names it (a
 * region added at runtime; its membership entry's address is shown, never used: see main); `--force` records it also where the region is no longer a member
 * (a Redis that lost the record while no process remembered it), and removes a region that still runs,
 * which `remove` otherwise refuses (see runningConnection). Stop the region and take it out of every
 * config file first. A Redis that does not answer is named in `unreachable`:
 * run the command again once it is up. Reads REGIONS_CONFIG (default ./regions.config.json) for the
 * regions' Redis URLs and the key prefix, REDIS_URL and REDIS_KEY_PREFIX over them as a region takes them, and
 * in `sign` and `require` modes (`ackSignatures`) REPLICATION_KEYS (from the environment, else the cluster's
 * secrets file): `activate` and `remove` need them to sign the entry or the removal record they write, `list`
 * checks the copies with them; prints JSON.
 */
import { answerHelp, quietOnClosedStdout } from './usage';

/** `remove`'s flags (`--force`, `--redis-url <url>`, each at most once), or null when they do not parse. */
function removeFlags(args: readonly string[]): { force: boolean; redisUrl: string | null } | null {
  let force = false;
  let redisUrl: string | null = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--force' && !force) force = true;
    else if (args[i] === '--redis-url' && redisUrl === null && isRedisUrl(args[i + 1])) redisUrl = args[++i] as string;
    else return null;
  }
  return { force, redisUrl };
}

function isRedisUrl(value: string | undefined): boolean {
  try {
    return value !== undefined && ['redis:', 'rediss:'].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

const USAGE = 'usage: npm run members -- list | activate <region> | remove <region> [--force] [--redis-url <url>]';

async function main(): Promise<void> {
  answerHelp(process.argv.slice(2), USAGE);
  quietOnClosedStdout();
  const [command, region, ...rest] = process.argv.slice(2);
  const flags = command === 'remove' ? removeFlags(rest) : rest.length === 0 ? { force: false, redisUrl: null } : null;
  if ((command !== 'list' && !((command === 'activate' || command === 'remove') && region)) || !flags) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }
  // The commands' modules (the config's schema and validator, ioredis: ~0.3 s of CPU) once the arguments parse.
  const { runMembers } = await import('./members-commands');
  await runMembers(command, region, flags);
}

void main();
