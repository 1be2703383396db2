/**
 * The names a region's processes give their Redis connections (CLIENT LIST shows them), which `members remove`
 * (scripts/members.ts) tells a running region by, among the connections of every deployment that shares the
 * Redis: `<prefix><region>:<pid>:<role…>`, where the key prefix ends with ':' (as usual), else
 * `<prefix>/<region>:<pid>:<role…>`. Run together, a prefix without ':' and a region were ambiguous: prefix
 * 'a:us-' with region 'east' and prefix 'a:' with region 'us-east' both named 'a:us-east:…', and a region of
 * one deployment was seen running as another's. '/' is in no prefix and no region id (config.ts), and each
 * role word starts with a letter, so a name is read back exactly: the pid is its last all-digit part.
 */

/** What a process of `region` of the deployment with key `prefix` names its connections before their roles. */
export function processConnectionName(prefix: string, region: string, pid = process.pid): string {
  return `${deploymentRegion(prefix, region)}:${pid}`;
}

const deploymentRegion = (prefix: string, region: string) => `${prefix.endsWith(':') ? prefix : `${prefix}/`}${region}`;

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Whether a connection named `name` is one of a process of `region` of the deployment with key `prefix` (its
 * cmd, sub, reader, to:<peer> connections, and the operator thread's operator:…), exactly. (A process of a
 * release before the '/', under a prefix without ':', is not seen: its name, the prefix and region run together,
 * is just as well a region's of a deployment whose prefix ends with ':'.)
 */
export function isConnectionOf(name: string, prefix: string, region: string): boolean {
  return new RegExp(`^${escape(deploymentRegion(prefix, region))}:\\d+(?::[a-z][a-z0-9-]*)+$`).test(name);
}
