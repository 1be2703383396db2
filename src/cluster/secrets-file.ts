/**
 * The cluster's secrets file: `.cluster/<config name>.env` next to the regions config, where `npm run cluster`
 * keeps the secrets it made up (scripts/cluster.ts), where `npm run reseed` and `npm run members` find
 * REPLICATION_KEYS, and which a region started alone without its secrets names (config.ts).
 */
import fs from 'node:fs';
import path from 'node:path';

export function secretsPath(configPath: string): string {
  return path.join(path.dirname(configPath), '.cluster', `${path.basename(configPath, '.json')}.env`);
}

/**
 * Its KEY=value lines of the names in `names`, read as a shell reads them: `export ` before the name and one pair
 * of quotes allowed. Empty when there is no file.
 */
export function readSecrets(file: string, names: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^(?:export\s+)?([A-Z_]+)=(['"]?)(.*)\2$/.exec(line.trim());
    if (m?.[1] && m[3] && names.includes(m[1])) out.set(m[1], m[3]);
  }
  return out;
}

/** The file as a command run in `cwd` names it (relative: what `. <file>` in that shell takes). */
export function shownPath(file: string, cwd: string): string {
  return path.relative(cwd, file) || file;
}

/** Where a cluster started with another regions config keeps its secrets, and how to load them. */
export const OTHER_CONFIG_SECRETS = 'a cluster of another config keeps them in .cluster/<its name>.env next to it; load that with set -a; . <file>; set +a';
