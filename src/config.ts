/**
 * Deployment configuration: regions.config.json plus environment overrides.
 * Read and validated once at start; a bad value stops the process with a message naming the field.
 */
import type { ErrorObject, ValidateFunction } from 'ajv';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config-error';
import { OTHER_CONFIG_SECRETS, readSecrets, secretsPath, shownPath } from './cluster/secrets-file';
import { KEY_PREFIX_PATTERN } from './config-constants';
import type { ConfigFile, RegionConfig } from './config-schema';
import { validate as precompiled } from './config-validate';
import { parseReplicationKeys, type ReplicationKey } from './replication-keys';
import { DEFAULT_ADMISSION, type AdmissionLimits } from './http/admission';
import { DEFAULT_THREADPOOL_SIZE, threadPoolSize } from './threadpool-size';

/** The database pool's size (src/db/client.ts); the gates together must leave some of it to admin and replication. */
export const DB_POOL_SIZE = 10;
/** The operator routes' own pool (src/region.ts): admin, readiness and metrics never wait behind the API. */
export const ADMIN_POOL_SIZE = 2;
export const ADMISSION_RESERVED_CONNECTIONS = 2;


export interface Config extends ConfigFile {
  /** The region this process is. */
  region: RegionConfig;
  /**
   * How this process reaches its own region's Redis when not at the address the other regions use
   * (REGION_REDIS_URL, e.g. a local address); unset: its config entry's `redisUrl`, else the default.
   */
  localRedisUrl?: string;
  /**
   * REDIS_URL, REDIS_KEY_PREFIX and DATABASE_URL as the environment gave them (over the file's): an operator command
   * run for this region needs the same ones (reseedCommand quotes them). Not REGION_REDIS_URL: another address of the
   * same Redis, for this process; the command reaches it where the other regions do.
   */
  operatorEnv?: OperatorEnv;
  adminToken: string;
  /**
   * Other admin tokens still accepted (ADMIN_TOKEN_ACCEPTED, comma-separated): a rotation's old token, or its
   * next one before any region uses it. The region calls the others with adminToken.
   */
  adminAcceptedTokens: string[];
  /** Secret that signs Infisical-dialect access tokens (and, derived, the SSO tokens); the same in every region. */
  tokenSigningSecret: string;
  /**
   * Other secrets whose tokens are still accepted and whose SSO key is still published
   * (TOKEN_ACCEPTED_SECRETS, comma-separated): a rotation's old secret, or its next one before any region
   * signs with it. None of them signs.
   */
  tokenAcceptedSecrets?: string[];
  /**
   * Keys that sign and verify change events on the bus (REPLICATION_KEYS, `kid:secret,...`): the first
   * signs, every one is accepted. The same set in every region (see src/replication/event-auth.ts).
   */
  replicationKeys: ReplicationKey[];
  logLevel: string;
  configPath: string;
  /**
   * Judge IdP certificates and validUntil as of this ISO time instead of now (METADATA_VALIDATION_TIME).
   * For tests whose fixtures expire; leave unset in production.
   */
  metadataValidationTime: string | null;
}

/** The settings of a region's environment that `npm run reseed` takes as the region does (see Config.operatorEnv). */
export interface OperatorEnv {
  REDIS_URL?: string;
  REDIS_KEY_PREFIX?: string;
  DATABASE_URL?: string;
}

export { ConfigError };

export const MIN_SIGNING_SECRET_BYTES = 32;

/**
 * ConfigFileSchema's validator, compiled ahead (src/config-validate.ts, scripts/config-validator.ts): TypeBox and
 * ajv's compiler took ~190 ms of CPU of each process that read the config (docs/performance.md).
 */
const validateFile = precompiled as unknown as ValidateFunction<ConfigFile>;

/**
 * A URL as a refusal quotes it: as written, but for the password of its user, if any (`https://u:***@host`).
 * The refusal is printed and goes wherever the start's output is logged; the password is the one thing in it
 * the operator does not need to see again. Masked up to the last `@`, wherever it is: a password with an
 * unencoded `/`, `?` or `#` (which no parser reads as one, so the URL is refused and quoted) is masked too, at
 * the cost of a port, path or query shown as `***` when an `@` follows them.
 */
function withoutPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/?#:@]*:).*@/is, '$1***@');
}

/** The ports http and https default to: with the scheme ignored, either is no other place. */
const DEFAULT_PORTS = new Set(['', '80', '443']);

/**
 * A publicUrl as the place it names: its host (in any case) and path (a trailing slash or not), whatever the
 * scheme and a default port (http://a.example, https://a.example and https://a.example:443 are one place for
 * a browser: one host's cookies and users); or null when it is not one that paths can be appended to: the ACS
 * URL, the SP metadata and the console's calls are publicUrl + path, so a query or fragment swallowed the path,
 * and a URL that does not parse named no place at all (the schema checks the scheme only).
 */
function samePlace(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (url.includes('?') || url.includes('#') || parsed.username !== '' || parsed.password !== '') return null;
  const port = DEFAULT_PORTS.has(parsed.port) ? '' : `:${parsed.port}`;
  return `${parsed.hostname}${port}${parsed.pathname}`.replace(/\/+$/, '');
}

export function readConfigFile(configPath: string): ConfigFile {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot read config file ${configPath}: ${(err as Error).message}`);
  }
  if (!validateFile(raw)) {
    const errors = validateFile.errors ?? [];
    // A field of a few values (ackSignatures) is a union of literals: its value failed each literal and then the
    // union ("must be equal to constant" three times, "must match a schema in anyOf"). Said once, with the values.
    const literals = (anyOf: ErrorObject) =>
      errors.filter((e) => e.keyword === 'const' && e.instancePath === anyOf.instancePath && e.schemaPath.startsWith(`${anyOf.schemaPath}/`));
    const folded = new Set(errors.filter((e) => e.keyword === 'anyOf').flatMap(literals));
    const problems = errors.filter((e) => !folded.has(e)).map((e) => {
      const where = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : '(root)';
      const values = e.keyword === 'anyOf' ? literals(e).map((l) => JSON.stringify(l.params.allowedValue)) : [];
      if (values.length) return `${where}: must be one of ${values.join(', ')}, got ${JSON.stringify(e.data)}`;
      const extra = e.keyword === 'additionalProperties' ? ` '${String(e.params.additionalProperty)}'` : '';
      return `${where}: ${e.message}${extra}`;
    });
    throw new ConfigError(`invalid config file ${configPath}: ${problems.join('; ')}`);
  }
  const ids = new Set<string>();
  // A URL shared by two regions (one name behind a global load balancer, say) would make their ACS URLs one:
  // a sign-in started in one region and posted to the other is refused, and the console reaches one of them twice.
  const publicUrls = new Map<string, { id: string; url: string }>();
  for (const [i, r] of raw.regions.entries()) {
    if (ids.has(r.id)) throw new ConfigError(`invalid config file ${configPath}: regions.${i}.id: duplicate region id '${r.id}'`);
    ids.add(r.id);
    if (r.operatorPort === r.port) throw new ConfigError(`invalid config file ${configPath}: regions.${i}.operatorPort: it must differ from port (${r.port})`);
    if (r.publicUrl === undefined) continue;
    const key = samePlace(r.publicUrl);
    if (key === null) {
      throw new ConfigError(
        `invalid config file ${configPath}: regions.${i}.publicUrl: '${withoutPassword(r.publicUrl)}' must be an absolute http(s) URL with no query, fragment, user or password ` +
          `(the region's paths are appended to it)`,
      );
    }
    const other = publicUrls.get(key);
    if (other !== undefined) {
      const spelled = other.url === r.publicUrl ? '' : `. Region '${other.id}' has '${other.url}': the same host and path (neither the scheme, a default port, the case of the host nor a trailing slash makes another place)`;
      throw new ConfigError(
        `invalid config file ${configPath}: regions.${i}.publicUrl: '${r.publicUrl}' is also the publicUrl of region '${other.id}'; ` +
          `each region needs its own (a SAML sign-in is answered only by the region that started it, at that region's ACS URL)${spelled}`,
      );
    }
    publicUrls.set(key, { id: r.id, url: r.publicUrl });
  }
  const slots = raw.admission?.databaseSlots ?? DEFAULT_ADMISSION.databaseSlots;
  if (slots > DB_POOL_SIZE - ADMISSION_RESERVED_CONNECTIONS) {
    throw new ConfigError(
      `invalid config file ${configPath}: admission.databaseSlots is ${slots}; it must be at most ` +
        `${DB_POOL_SIZE - ADMISSION_RESERVED_CONNECTIONS} (the database pool's ${DB_POOL_SIZE} connections less ${ADMISSION_RESERVED_CONNECTIONS} kept for replication and writes of the admin routes)`,
    );
  }
  return raw;
}

type Env = Record<string, string | undefined>;

function intFromEnv(env: Env, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new ConfigError(`${name} must be an integer, got '${v}'`);
  return Number(v);
}

/**
 * The deployment's regions file: REGIONS_CONFIG, a relative one from the directory the command was run in
 * (npm runs scripts in the package's root and says where it was called in INIT_CWD), else
 * ./regions.config.json of the package.
 */
export function regionsConfigPath(env: Env = process.env): string {
  return env.REGIONS_CONFIG ? path.resolve(env.INIT_CWD ?? process.cwd(), env.REGIONS_CONFIG) : path.resolve('./regions.config.json');
}

/** Environment variables that override the entry of the process's own region (see loadConfig). */
export const REGION_ENTRY_ENV = ['PORT', 'OPERATOR_PORT', 'HOST', 'DATABASE_URL', 'REGION_REDIS_URL'] as const;

/**
 * The deployment's regions file (see regionsConfigPath), read and checked, for a region and the operator commands
 * alike: without REGIONS_CONFIG and with no ./regions.config.json, the message says to set it (the commands said
 * only that ./regions.config.json could not be read: ENOENT).
 */
export function readRegionsConfig(env: Env = process.env): { configPath: string; file: ConfigFile } {
  const configPath = regionsConfigPath(env);
  if (!env.REGIONS_CONFIG && !fs.existsSync(configPath)) {
    throw new ConfigError(`REGIONS_CONFIG is not set and there is no ${configPath}; point REGIONS_CONFIG at the deployment's regions file`);
  }
  return { configPath, file: readConfigFile(configPath) };
}

/** The deployment's regions file (readRegionsConfig) and the entry of REGION in it. */
function ownEntry(env: Env): { configPath: string; file: ConfigFile; region: RegionConfig } {
  const { configPath, file } = readRegionsConfig(env);
  const regionId = env.REGION;
  if (!regionId) throw new ConfigError(`REGION is not set; it must be one of: ${file.regions.map((r) => r.id).join(', ')}`);
  const region = file.regions.find((r) => r.id === regionId);
  if (!region) throw new ConfigError(`REGION '${regionId}' is not in ${configPath}; known regions: ${file.regions.map((r) => r.id).join(', ')}`);
  return { configPath, file, region };
}

/** The host and port `region` listens on: its entry's, PORT and HOST overriding them (an override set to '' is unset). */
function listenOverrides(env: Env, region: RegionConfig): { host: string; port: number } {
  const port = intFromEnv(env, 'PORT');
  if (port !== undefined && (port < 1 || port > 65535)) throw new ConfigError(`PORT must be 1..65535, got ${port}`);
  return { host: env.HOST || region.host || '127.0.0.1', port: port ?? region.port };
}

/** The region's operator port: OPERATOR_PORT, else its entry's `operatorPort` (undefined: none); never `port`. */
function operatorOverride(env: Env, region: RegionConfig, port: number): number | undefined {
  const given = intFromEnv(env, 'OPERATOR_PORT');
  if (given !== undefined && (given < 1 || given > 65535)) throw new ConfigError(`OPERATOR_PORT must be 1..65535, got ${given}`);
  const operatorPort = given ?? region.operatorPort;
  if (operatorPort === port) throw new ConfigError(`the operator port (${operatorPort}) must differ from the region's port`);
  return operatorPort;
}

/**
 * The host and port the region of `env` (REGIONS_CONFIG, REGION, PORT, HOST, OPERATOR_PORT) listens on, and
 * its operator port if it has one, resolved as loadConfig resolves them, without the secrets loadConfig also
 * checks: for the image's health check (src/healthcheck.ts), which must ask the port the region took, its
 * config file's when PORT is unset, and the operator port when there is one (it answers under a flood).
 */
export function listenAddress(env: Env = process.env): { host: string; port: number; operatorPort?: number } {
  const { region } = ownEntry(env);
  const listen = listenOverrides(env, region);
  const operatorPort = operatorOverride(env, region, listen.port);
  return { ...listen, ...(operatorPort !== undefined ? { operatorPort } : {}) };
}

/**
 * The deployment's Redis as its regions reach it: REDIS_URL over the file's `redisUrl` (the default Redis) and
 * REDIS_KEY_PREFIX over its `redisKeyPrefix`, each checked as the file's field is (one set to '' is unset).
 * A region (loadConfig) and the operator commands (`npm run reseed`, `npm run members`) all resolve them here:
 * a command that read the file alone worked on other keys than the regions it was run beside.
 */
export function withRedisOverrides(file: ConfigFile, env: Env = process.env): ConfigFile {
  if (env.REDIS_URL && !/^rediss?:\/\//.test(env.REDIS_URL)) throw new ConfigError(`REDIS_URL must start with redis:// or rediss://`);
  if (env.REDIS_KEY_PREFIX && !new RegExp(KEY_PREFIX_PATTERN).test(env.REDIS_KEY_PREFIX)) {
    throw new ConfigError(`REDIS_KEY_PREFIX must be 1 to 64 of A-Z a-z 0-9 _ . : -, got '${env.REDIS_KEY_PREFIX}'`);
  }
  return { ...file, redisUrl: env.REDIS_URL || file.redisUrl, redisKeyPrefix: env.REDIS_KEY_PREFIX || file.redisKeyPrefix };
}

/** A database given for one region on `npm run reseed`'s command line, and the flag that gave it (named in its messages). */
export interface DatabaseOverride {
  region: string;
  url: string;
  flag: string;
}

/**
 * The deployment's regions file with each override's URL (`npm run reseed`'s --to-database-url, --from-database-url
 * and --database-url, each checked as a region checks DATABASE_URL) over the `databaseUrl` of its region: the database
 * a region started with DATABASE_URL runs on, which the re-seed fills (its --to region) or reads (its peer, and the
 * other origins whose outboxes show whether the peer caught up). The other regions' entries stay as the file has them.
 */
export function withDatabaseOverrides<F extends Pick<ConfigFile, 'regions'>>(file: F, overrides: readonly DatabaseOverride[]): F {
  for (const o of overrides) checkPostgresUrl(o.url, o.flag);
  return { ...file, regions: file.regions.map((r) => ({ ...r, databaseUrl: overrides.find((o) => o.region === r.id)?.url ?? r.databaseUrl })) };
}

function checkPostgresUrl(url: string, name: string): void {
  if (!/^postgres(ql)?:\/\//.test(url)) throw new ConfigError(`${name} must start with postgresql://`);
}

/** DATABASE_URL, checked; undefined when unset or ''. */
function databaseOverride(env: Env): string | undefined {
  if (!env.DATABASE_URL) return undefined;
  checkPostgresUrl(env.DATABASE_URL, 'DATABASE_URL');
  return env.DATABASE_URL;
}

/**
 * Builds the process configuration. Environment variables override the file:
 * REGIONS_CONFIG, REGION, ADMIN_TOKEN, ADMIN_TOKEN_ACCEPTED, TOKEN_SIGNING_SECRET, TOKEN_ACCEPTED_SECRETS, REPLICATION_KEYS, REDIS_URL (the default Redis),
 * REDIS_KEY_PREFIX, PORT, OPERATOR_PORT, HOST, DATABASE_URL, REGION_REDIS_URL (the last five for this process's
 * region only), LOG_LEVEL.
 */
export function loadConfig(env: Env = process.env): Config {
  const { configPath, file, region } = ownEntry(env);
  // Several unset at once (a first start by hand): named together, not one per attempt.
  const unset = ['ADMIN_TOKEN', 'TOKEN_SIGNING_SECRET', 'REPLICATION_KEYS'].filter((name) => !env[name]);
  // Where a cluster of this config keeps the unset ones among `names` ('' when they are set: a value refused).
  const where = (...names: string[]) => clusterSecretsHint(configPath, names.filter((name) => !env[name]), env);
  if (unset.length > 1) {
    throw new ConfigError(
      `${unset.join(', ')} are not set. Each region needs ADMIN_TOKEN (at least 16 characters), TOKEN_SIGNING_SECRET ` +
        `(at least ${MIN_SIGNING_SECRET_BYTES} bytes) and REPLICATION_KEYS (kid:secret), the last two the same in every region ` +
        `(e.g. openssl rand -hex 32); npm run cluster makes them up for a cluster on one machine${where(...unset)}`,
    );
  }
  const adminToken = env.ADMIN_TOKEN ?? '';
  if (adminToken.length < 16) throw new ConfigError(`ADMIN_TOKEN must be set to a secret of at least 16 characters${where('ADMIN_TOKEN')}`);
  const adminAcceptedTokens = [...new Set((env.ADMIN_TOKEN_ACCEPTED ?? '').split(',').map((x) => x.trim()).filter((x) => x !== ''))].filter((x) => x !== adminToken);
  const shortToken = adminAcceptedTokens.findIndex((x) => x.length < 16);
  if (shortToken >= 0) throw new ConfigError(`ADMIN_TOKEN_ACCEPTED: token ${shortToken + 1} is shorter than 16 characters; each is a token like ADMIN_TOKEN, separated by commas`);
  // Its own secret, not derived from ADMIN_TOKEN: every access token would otherwise let its holder
  // guess at the admin token offline.
  // HS256 keys shorter than the hash (32 bytes) make the tokens' security the key's, not the algorithm's.
  const tokenSigningSecret = env.TOKEN_SIGNING_SECRET ?? '';
  if (Buffer.byteLength(tokenSigningSecret, 'utf8') < MIN_SIGNING_SECRET_BYTES) {
    throw new ConfigError(
      `TOKEN_SIGNING_SECRET must be set to a random secret of at least ${MIN_SIGNING_SECRET_BYTES} bytes (e.g. openssl rand -hex 32), the same in every region${where('TOKEN_SIGNING_SECRET')}`,
    );
  }
  const tokenAcceptedSecrets = acceptedSecrets(env.TOKEN_ACCEPTED_SECRETS, tokenSigningSecret);
  // With where a cluster of this config keeps them (an operator script says it its own way: cluster-secrets.ts).
  if (!env.REPLICATION_KEYS) throw new ConfigError(`${REPLICATION_KEYS_UNSET}${where('REPLICATION_KEYS')}`);
  const replicationKeys = replicationKeysOf(env);
  // An override set to '' is unset, as for PORT and HOST (and npm run cluster): compose passes an unset ${VAR} so.
  const redis = withRedisOverrides(file, env);
  if (env.REGION_REDIS_URL && !/^rediss?:\/\//.test(env.REGION_REDIS_URL)) throw new ConfigError(`REGION_REDIS_URL must start with redis:// or rediss://`);
  const databaseUrl = databaseOverride(env) ?? region.databaseUrl;
  const listen = listenOverrides(env, region);
  const operatorPort = operatorOverride(env, region, listen.port);
  const merged: RegionConfig = {
    ...region,
    port: listen.port,
    ...(operatorPort !== undefined ? { operatorPort } : {}),
    host: listen.host,
    databaseUrl,
  };
  // A DATABASE_URL that is the entry's own is the command's already: quoted, it asked the operator to type in a
  // URL with a password for nothing.
  const operatorEnv = Object.fromEntries(
    (['REDIS_URL', 'REDIS_KEY_PREFIX', 'DATABASE_URL'] as const).flatMap((name) => (env[name] && !(name === 'DATABASE_URL' && env[name] === region.databaseUrl) ? [[name, env[name]]] : [])),
  ) as OperatorEnv;
  checkThreadPoolSize(env.UV_THREADPOOL_SIZE);
  return {
    ...redis,
    regions: file.regions.map((r) => (r.id === merged.id ? merged : r)),
    region: merged,
    ...(env.REGION_REDIS_URL ? { localRedisUrl: env.REGION_REDIS_URL } : {}),
    ...(Object.keys(operatorEnv).length ? { operatorEnv } : {}),
    adminToken,
    adminAcceptedTokens,
    tokenSigningSecret,
    ...(tokenAcceptedSecrets.length ? { tokenAcceptedSecrets } : {}),
    replicationKeys,
    logLevel: logLevel(env.LOG_LEVEL),
    configPath,
    metadataValidationTime: validTime(env.METADATA_VALIDATION_TIME),
  };
}

/**
 * For a region started without some of its secrets (`unset`; '' when none is), to end its message with: where `npm run cluster` keeps the
 * secrets of this config, whether that file is there and holds them, and how to load it. A region started alone
 * (`npm start`) after a cluster of the same config ran needs that cluster's secrets; it was left guessing where
 * they were.
 */
function clusterSecretsHint(configPath: string, unset: readonly string[], env: Env): string {
  if (!unset.length) return '';
  const file = secretsPath(configPath);
  const shown = shownPath(file, env.INIT_CWD ?? process.cwd());
  const load = `\`set -a; . ${shown}; set +a\``;
  const config = path.basename(configPath);
  if (!fs.existsSync(file)) {
    return `. npm run cluster keeps the secrets of a cluster of ${config} in ${shown}, and there is no such file: no cluster of this config ` +
      `ran on this machine (${OTHER_CONFIG_SECRETS}), ` +
      'or export the secrets the deployment\'s regions run with';
  }
  const kept = readSecrets(file, unset);
  const lacking = unset.filter((name) => !kept.has(name));
  if (lacking.length === unset.length) return `. ${shown} (where npm run cluster keeps the secrets of ${config}) exists but has no ${lacking.join(', ')} line; export the value the deployment's regions run with`;
  const partly = lacking.length ? ` (it has no ${lacking.join(', ')} line: export that one as the deployment's regions have it)` : '';
  return `. npm run cluster keeps the secrets of ${config} in ${shown}, which exists${partly}: ${load} exports them in this shell; then start again`;
}

const REPLICATION_KEYS_UNSET =
  `REPLICATION_KEYS must be set to the key(s) that sign change events, kid:secret[,kid:secret...] with secrets of at least ${MIN_SIGNING_SECRET_BYTES} bytes (e.g. r1:$(openssl rand -hex 32)), the same in every region`;

/** REPLICATION_KEYS, parsed; a ConfigError naming it when unset or malformed. */
export function replicationKeysOf(env: Env = process.env): ReplicationKey[] {
  // Change events are signed: anyone who can write to Redis could otherwise change every region's data.
  if (!env.REPLICATION_KEYS) throw new ConfigError(REPLICATION_KEYS_UNSET);
  try {
    return parseReplicationKeys(env.REPLICATION_KEYS);
  } catch (err) {
    throw new ConfigError(`REPLICATION_KEYS: ${(err as Error).message}`);
  }
}

/** The secrets whose tokens are accepted: the signing one first, then TOKEN_ACCEPTED_SECRETS. */
export function tokenSecrets(config: Pick<Config, 'tokenSigningSecret' | 'tokenAcceptedSecrets'>): string[] {
  return [config.tokenSigningSecret, ...(config.tokenAcceptedSecrets ?? [])];
}

/** TOKEN_ACCEPTED_SECRETS: comma-separated, each as long as the signing secret must be; the signing secret itself is left out. */
function acceptedSecrets(v: string | undefined, signing: string): string[] {
  const list = (v ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
  const short = list.findIndex((x) => Buffer.byteLength(x, 'utf8') < MIN_SIGNING_SECRET_BYTES);
  if (short >= 0) {
    throw new ConfigError(`TOKEN_ACCEPTED_SECRETS: secret ${short + 1} is shorter than ${MIN_SIGNING_SECRET_BYTES} bytes; each is a secret like TOKEN_SIGNING_SECRET, separated by commas`);
  }
  return [...new Set(list)].filter((x) => x !== signing);
}

/** pino's levels; an unknown one made pino throw at the first logger, with a stack instead of a message. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function logLevel(v: string | undefined): string {
  if (!v) return 'info';
  const level = v.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got '${v}'`);
  return level;
}

/**
 * LOG_FORMAT of `npm run cluster`: `json` (any case, as LOG_LEVEL) prints the regions' JSON log lines as they
 * are, unset the readable ones. Checked like the other variables: a typo printed the readable lines silently.
 */
export function jsonLogFormat(env: Env = process.env): boolean {
  const v = env.LOG_FORMAT;
  if (!v) return false;
  if (v.trim().toLowerCase() === 'json') return true;
  throw new ConfigError(`LOG_FORMAT must be json (the regions' JSON log lines as they are) or unset (readable lines), got '${v}'`);
}

/**
 * UV_THREADPOOL_SIZE, read by libuv itself (threadpool.ts sets 16 when unset): checked, not used. libuv takes
 * anything: text it cannot read as a number gave 1 thread, which hung host-name lookups then held whole, while
 * the metadata fetcher's lookup gate counted on libuv's default of 4.
 */
function checkThreadPoolSize(v: string | undefined): void {
  if (threadPoolSize(v) === null) {
    throw new ConfigError(`UV_THREADPOOL_SIZE must be a whole number from 1 to 1024 (threads of Node's pool; unset, a region process takes ${DEFAULT_THREADPOOL_SIZE}), got '${v}'`);
  }
}

function validTime(v: string | undefined): string | null {
  if (!v) return null;
  if (Number.isNaN(Date.parse(v))) throw new ConfigError(`METADATA_VALIDATION_TIME must be an ISO date-time, got '${v}'`);
  return new Date(v).toISOString();
}

/** The admission limits of a configuration: its `admission` fields over the defaults. */
export function admissionLimits(config: Pick<ConfigFile, 'admission'>): AdmissionLimits {
  const a = config.admission;
  return {
    writes: { ...DEFAULT_ADMISSION.writes, ...a?.writes },
    reads: { ...DEFAULT_ADMISSION.reads, ...a?.reads },
    databaseSlots: a?.databaseSlots ?? DEFAULT_ADMISSION.databaseSlots,
    retryAfterSeconds: a?.retryAfterSeconds ?? DEFAULT_ADMISSION.retryAfterSeconds,
  };
}

/** The Redis of a region: its own `redisUrl`, else the deployment's default (one Redis for every region). */
export function redisUrlOf(config: Pick<ConfigFile, 'redisUrl' | 'regions'>, regionId: string): string {
  return config.regions.find((r) => r.id === regionId)?.redisUrl ?? config.redisUrl;
}

export function regionIds(config: Pick<Config, 'regions'>): string[] {
  return config.regions.map((r) => r.id);
}
