import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, redisUrlOf, regionsConfigPath } from '../src/config';
import { PROJECT_ROOT } from '../src/paths';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'saml-config-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const good = {
  redisUrl: 'redis://127.0.0.1:6379',
  redisKeyPrefix: 'saml:',
  regions: [
    { id: 'us-iowa', port: 8081, databaseUrl: 'postgresql://postgres@127.0.0.1:5432/a' },
    { id: 'asia-japan', port: 8083, databaseUrl: 'postgresql://postgres@127.0.0.1:5432/b' },
  ],
};

function write(content: unknown, name = `${Math.random()}.json`): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

const env = (file: string, extra: Record<string, string> = {}) => ({ REGIONS_CONFIG: file, REGION: 'us-iowa', ADMIN_TOKEN: 'x'.repeat(20), TOKEN_SIGNING_SECRET: 's'.repeat(32), REPLICATION_KEYS: `k1:${'r'.repeat(32)}`, ...extra });

test('a valid file and environment give the region, with environment overrides applied', () => {
  const c = loadConfig(env(write(good), { PORT: '9999', REDIS_KEY_PREFIX: 'other:', DATABASE_URL: 'postgresql://postgres@127.0.0.1:5432/z' }));
  expect(c.region).toMatchObject({ id: 'us-iowa', port: 9999, databaseUrl: 'postgresql://postgres@127.0.0.1:5432/z', host: '127.0.0.1' });
  expect(c.redisKeyPrefix).toBe('other:');
  expect(c.regions.map((r) => r.id)).toEqual(['us-iowa', 'asia-japan']);
});

test('HOST, REDIS_URL and LOG_LEVEL override the file, and the region\'s own entry in the list of regions carries its overrides', () => {
  const file = { ...good, regions: [{ ...good.regions[0], host: '10.0.0.5' }, good.regions[1]] };
  const c = loadConfig(env(write(file), { HOST: '0.0.0.0', PORT: '9999', REDIS_URL: 'redis://10.0.0.9:6379', LOG_LEVEL: 'debug' }));
  expect(c.region).toMatchObject({ host: '0.0.0.0', port: 9999 });
  expect(c.redisUrl).toBe('redis://10.0.0.9:6379');
  expect(c.logLevel).toBe('debug');
  // What reaches a region through the list (the console, the SP metadata) must see the port it listens on.
  expect(c.regions.find((r) => r.id === 'us-iowa')).toEqual(c.region);
  expect(c.regions.find((r) => r.id === 'asia-japan')).toEqual(good.regions[1]);
  expect(loadConfig(env(write(file))).region.host).toBe('10.0.0.5');
});

test('replicationPacks: unset by default (the region then packs), false when the file says so', () => {
  expect(loadConfig(env(write(good))).replicationPacks).toBeUndefined();
  expect(loadConfig(env(write({ ...good, replicationPacks: false }))).replicationPacks).toBe(false);
});

test('writeTransactionTimeoutMs and republishAfterMs: unset by default, taken from the file within their bounds', () => {
  const unset = loadConfig(env(write(good)));
  expect([unset.writeTransactionTimeoutMs, unset.republishAfterMs]).toEqual([undefined, undefined]);
  expect(loadConfig(env(write({ ...good, writeTransactionTimeoutMs: 3000, republishAfterMs: 2000 })))).toMatchObject({ writeTransactionTimeoutMs: 3000, republishAfterMs: 2000 });
});

test("each region's Redis: its own redisUrl, else the top-level default; REGION_REDIS_URL is how this process reaches its own", () => {
  const file = { ...good, regions: [{ ...good.regions[0], redisUrl: 'redis://10.0.0.1:6379' }, good.regions[1]] };
  const c = loadConfig(env(write(file), { REGION_REDIS_URL: 'redis://127.0.0.1:6380' }));
  expect(redisUrlOf(c, 'us-iowa')).toBe('redis://10.0.0.1:6379');
  expect(redisUrlOf(c, 'asia-japan')).toBe('redis://127.0.0.1:6379');
  expect(c.localRedisUrl).toBe('redis://127.0.0.1:6380');
  expect(loadConfig(env(write(good))).localRedisUrl).toBeUndefined();
});

test('an override set to the empty string is as if unset (compose passes an unset ${VAR} so), as npm run cluster takes it', () => {
  const file = { ...good, regions: [{ ...good.regions[0], operatorPort: 9181 }, good.regions[1]] };
  const blank = { PORT: '', OPERATOR_PORT: '', HOST: '', DATABASE_URL: '', REDIS_URL: '', REGION_REDIS_URL: '', REDIS_KEY_PREFIX: '' };
  const c = loadConfig(env(write(file), blank));
  expect(c.region).toEqual({ ...file.regions[0], host: '127.0.0.1' });
  expect(c.redisUrl).toBe(good.redisUrl);
  expect(c.redisKeyPrefix).toBe(good.redisKeyPrefix);
  expect(c.localRedisUrl).toBeUndefined();
});

test("the operator port: the region's operatorPort, OPERATOR_PORT over it, none by default", () => {
  const file = { ...good, regions: [{ ...good.regions[0], operatorPort: 9181 }, good.regions[1]] };
  expect(loadConfig(env(write(file))).region.operatorPort).toBe(9181);
  expect(loadConfig(env(write(file), { OPERATOR_PORT: '9182' })).region.operatorPort).toBe(9182);
  expect(loadConfig(env(write(good))).region.operatorPort).toBeUndefined();
});

test.each<[string, unknown, Record<string, string>, RegExp]>([
  ['a missing file', null, {}, /cannot read config file/],
  ['invalid JSON', '{"redisUrl": ', {}, /cannot read config file/],
  ['a bad port', { ...good, regions: [{ ...good.regions[0], port: 70000 }] }, {}, /regions\.0\.port/],
  ['a region named constructor (every object has one: per-region fields would read as present)', { ...good, regions: [{ ...good.regions[0], id: 'constructor' }] }, {}, /regions\.0\.id/],
  ['a bad Redis URL', { ...good, redisUrl: 'http://x' }, {}, /redisUrl/],
  ["a bad region's Redis URL", { ...good, regions: [{ ...good.regions[0], redisUrl: 'http://x' }] }, {}, /regions\.0\.redisUrl/],
  ['a bad REGION_REDIS_URL', good, { REGION_REDIS_URL: 'localhost:6379' }, /REGION_REDIS_URL must start with redis:\/\//],
  ['a bad REDIS_URL', good, { REDIS_URL: 'localhost:6379' }, /REDIS_URL must start with redis:\/\//],
  ['a REDIS_KEY_PREFIX the file would refuse', good, { REDIS_KEY_PREFIX: 'saml*' }, /REDIS_KEY_PREFIX must be 1 to 64 of A-Z a-z 0-9 _ \. : -, got 'saml\*'/],
  ['a REDIS_KEY_PREFIX longer than 64 characters', good, { REDIS_KEY_PREFIX: 'p'.repeat(65) }, /REDIS_KEY_PREFIX must be 1 to 64/],
  ['a DATABASE_URL of another database', good, { DATABASE_URL: 'mysql://root@127.0.0.1/x' }, /DATABASE_URL must start with postgresql:\/\//],
  ['a PORT above 65535', good, { PORT: '70000' }, /PORT must be 1\.\.65535, got 70000/],
  ['a PORT of 65536', good, { PORT: '65536' }, /PORT must be 1\.\.65535, got 65536/],
  ['a PORT of 0 (any free port, where nothing would find the region)', good, { PORT: '0' }, /PORT must be 1\.\.65535, got 0/],
  ['a PORT with trailing characters', good, { PORT: '8080x' }, /PORT must be an integer, got '8080x'/],
  ['an OPERATOR_PORT of 0', good, { OPERATOR_PORT: '0' }, /OPERATOR_PORT must be 1\.\.65535, got 0/],
  ['an OPERATOR_PORT of 65536', good, { OPERATOR_PORT: '65536' }, /OPERATOR_PORT must be 1\.\.65535, got 65536/],
  ['an unknown field', { ...good, colour: 'red' }, {}, /unknown|colour|additional/],
  ['a duplicate region', { ...good, regions: [good.regions[0], good.regions[0]] }, {}, /regions\.1\.id: duplicate/],
  ['no REGION', good, { REGION: '' }, /REGION is not set/],
  ['an unknown REGION', good, { REGION: 'mars' }, /REGION 'mars' is not in/],
  ['no ADMIN_TOKEN', good, { ADMIN_TOKEN: '' }, /ADMIN_TOKEN/],
  ['a 15-character ADMIN_TOKEN', good, { ADMIN_TOKEN: 'x'.repeat(15) }, /ADMIN_TOKEN must be set to a secret of at least 16 characters/],
  ['a 15-character accepted admin token', good, { ADMIN_TOKEN_ACCEPTED: `${'a'.repeat(16)},${'b'.repeat(15)}` }, /ADMIN_TOKEN_ACCEPTED: token 2 is shorter than 16 characters/],
  ['no TOKEN_SIGNING_SECRET', good, { TOKEN_SIGNING_SECRET: '' }, /TOKEN_SIGNING_SECRET/],
  ['a 16-character TOKEN_SIGNING_SECRET', good, { TOKEN_SIGNING_SECRET: 's'.repeat(16) }, /TOKEN_SIGNING_SECRET must be set to a random secret of at least 32 bytes/],
  ['a 31-byte TOKEN_SIGNING_SECRET', good, { TOKEN_SIGNING_SECRET: 's'.repeat(31) }, /at least 32 bytes/],
  ['a 31-byte accepted token secret', good, { TOKEN_ACCEPTED_SECRETS: `${'a'.repeat(32)},${'b'.repeat(31)}` }, /TOKEN_ACCEPTED_SECRETS: secret 2 is shorter than 32 bytes/],
  ['no REPLICATION_KEYS', good, { REPLICATION_KEYS: '' }, /REPLICATION_KEYS must be set/],
  ['none of the three secrets (named together)', good, { ADMIN_TOKEN: '', TOKEN_SIGNING_SECRET: '', REPLICATION_KEYS: '' }, /^ADMIN_TOKEN, TOKEN_SIGNING_SECRET, REPLICATION_KEYS are not set\./],
  ['two of the three secrets (named together)', good, { TOKEN_SIGNING_SECRET: '', REPLICATION_KEYS: '' }, /^TOKEN_SIGNING_SECRET, REPLICATION_KEYS are not set\./],
  ['a 31-byte replication secret', good, { REPLICATION_KEYS: `k1:${'r'.repeat(31)}` }, /REPLICATION_KEYS: the secret of key 'k1' must be at least 32 bytes/],
  ['a replication key without a key id', good, { REPLICATION_KEYS: 'r'.repeat(40) }, /REPLICATION_KEYS: entry 1 must be kid:secret/],
  ['a second replication key too short', good, { REPLICATION_KEYS: `k1:${'r'.repeat(32)},k2:short` }, /key 'k2' must be at least 32 bytes/],
  ['a duplicate replication key id', good, { REPLICATION_KEYS: `k1:${'r'.repeat(32)},k1:${'q'.repeat(32)}` }, /key id 'k1' appears twice/],
  ['a tombstone collection interval above 5 minutes', { ...good, tombstoneCollection: { intervalMs: 300_001 } }, {}, /tombstoneCollection\.intervalMs/],
  ['a negative tombstone minimum age', { ...good, tombstoneCollection: { minAgeMs: -1 } }, {}, /tombstoneCollection\.minAgeMs/],
  ['an unknown tombstone collection field', { ...good, tombstoneCollection: { horizon: 'now' } }, {}, /tombstoneCollection: .*additional properties 'horizon'/],
  ['a stream trim interval below 500 ms', { ...good, streamTrimIntervalMs: 100 }, {}, /streamTrimIntervalMs: must be >= 500/],
  ['a stream trim interval above 10 minutes', { ...good, streamTrimIntervalMs: 600_001 }, {}, /streamTrimIntervalMs: must be <= 600000/],
  ['an adoptAfterSeconds of 0', { ...good, adoptAfterSeconds: 0 }, {}, /adoptAfterSeconds/],
  ['a writeTransactionTimeoutMs above 20 s (the tombstone horizon counts on at most that)', { ...good, writeTransactionTimeoutMs: 20_001 }, {}, /writeTransactionTimeoutMs/],
  ['a writeTransactionTimeoutMs below 1 s', { ...good, writeTransactionTimeoutMs: 999 }, {}, /writeTransactionTimeoutMs/],
  ['a republishAfterMs below 1 s', { ...good, republishAfterMs: 999 }, {}, /republishAfterMs/],
  ['a claim interval below 100 ms', { ...good, claimIntervalMs: 99 }, {}, /claimIntervalMs: must be >= 100/],
  ['a claim interval above a minute', { ...good, claimIntervalMs: 60_001 }, {}, /claimIntervalMs: must be <= 60000/],
  ['a replicationPacks that is not a boolean', { ...good, replicationPacks: 'off' }, {}, /replicationPacks/],
  // One problem, naming the values: not "must be equal to constant" once per value and "must match a schema in anyOf".
  ['an ackSignatures that is none of its values', { ...good, ackSignatures: 'yes' }, {}, /: ackSignatures: must be one of "off", "sign", "require", got "yes"$/],
  ['a bad PORT', good, { PORT: 'eighty' }, /PORT must be an integer/],
  ['a bad operator port', { ...good, regions: [{ ...good.regions[0], operatorPort: 0 }] }, {}, /regions\.0\.operatorPort/],
  ['an operator port equal to the port', { ...good, regions: [{ ...good.regions[0], operatorPort: 8081 }] }, {}, /regions\.0\.operatorPort: it must differ from port/],
  [
    'two regions with one publicUrl (a sign-in is answered only by the region that started it)',
    { ...good, regions: [{ ...good.regions[0], publicUrl: 'https://sso.example.com' }, { ...good.regions[1], publicUrl: 'https://SSO.example.com/' }] },
    {},
    /regions\.1\.publicUrl: 'https:\/\/SSO\.example\.com\/' is also the publicUrl of region 'us-iowa'; each region needs its own/,
  ],
  // One host and path is one place for a browser (its cookies, its users), whatever the scheme or a default port.
  ...[
    ['schemes', 'https://sso.example.com', 'http://sso.example.com'],
    ['schemes and default ports, with a path', 'https://SSO.example.com/sso/', 'http://sso.example.com:80/sso'],
    ['a default port written out', 'https://sso.example.com', 'https://sso.example.com:443'],
    ["the other scheme's default port", 'https://sso.example.com', 'http://sso.example.com:443'],
  ].map(([what, first, second]): [string, unknown, Record<string, string>, RegExp] => [
    `two regions whose publicUrls differ only in ${what}`,
    { ...good, regions: [{ ...good.regions[0], publicUrl: first }, { ...good.regions[1], publicUrl: second }] },
    {},
    new RegExp(`regions\\.1\\.publicUrl: '${escaped(second)}' is also the publicUrl of region 'us-iowa'; each region needs its own .*\\. Region 'us-iowa' has '${escaped(first)}': the same host and path`),
  ]),
  // Paths are appended to it (the ACS URL, the SP metadata, the console's calls): a query or fragment swallowed them.
  ...[
    ['a query', 'https://sso.example.com/?region=us'],
    ['a fragment', 'https://sso.example.com/#us'],
    ['a user and password', 'https://user:secret@sso.example.com'],
    ['a space in its host', 'https://sso.exa mple.com'],
  ].map(([what, publicUrl]): [string, unknown, Record<string, string>, RegExp] => [
    `a publicUrl with ${what}`,
    { ...good, regions: [{ ...good.regions[0], publicUrl }, good.regions[1]] },
    {},
    /regions\.0\.publicUrl: '.*' must be an absolute http\(s\) URL with no query, fragment, user or password/,
  ]),
  ['a bad OPERATOR_PORT', good, { OPERATOR_PORT: '70000' }, /OPERATOR_PORT must be 1\.\.65535/],
  ['OPERATOR_PORT equal to PORT', good, { OPERATOR_PORT: '8081' }, /operator port \(8081\) must differ/],
  ['a bad METADATA_VALIDATION_TIME', good, { METADATA_VALIDATION_TIME: 'yesterday' }, /METADATA_VALIDATION_TIME/],
  ['a LOG_LEVEL pino does not know', good, { LOG_LEVEL: 'verbose' }, /LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got 'verbose'/],
  ...['junk', '0', '1025', ' 8', '8.5'].map((size): [string, unknown, Record<string, string>, RegExp] => [
    `UV_THREADPOOL_SIZE '${size}'`,
    good,
    { UV_THREADPOOL_SIZE: size },
    /UV_THREADPOOL_SIZE must be a whole number from 1 to 1024 \(threads of Node's pool; unset, a region process takes 16\), got '/,
  ]),
])('%s is refused with a message naming the field', (_n, content, extra, message) => {
  const file = content === null ? path.join(dir, 'absent.json') : write(content);
  expect(() => loadConfig(env(file, extra))).toThrow(message);
});

test('REPLICATION_KEYS: the first key signs, every key verifies; a secret may contain ":"', () => {
  const c = loadConfig(env(write(good), { REPLICATION_KEYS: `new:${'n'.repeat(32)},old:a:${'o'.repeat(32)}` }));
  expect(c.replicationKeys).toEqual([{ kid: 'new', secret: 'n'.repeat(32) }, { kid: 'old', secret: `a:${'o'.repeat(32)}` }]);
});

test('TOKEN_ACCEPTED_SECRETS: comma-separated, trimmed, without repeats and without the signing secret', () => {
  expect(loadConfig(env(write(good))).tokenAcceptedSecrets).toBeUndefined();
  const c = loadConfig(env(write(good), { TOKEN_ACCEPTED_SECRETS: ` ${'a'.repeat(32)} ,${'s'.repeat(32)},${'a'.repeat(32)},,${'b'.repeat(40)}` }));
  expect(c.tokenAcceptedSecrets).toEqual(['a'.repeat(32), 'b'.repeat(40)]);
});

test('ADMIN_TOKEN_ACCEPTED: comma-separated, trimmed, without repeats and without ADMIN_TOKEN', () => {
  expect(loadConfig(env(write(good))).adminAcceptedTokens).toEqual([]);
  const own = loadConfig(env(write(good))).adminToken;
  const c = loadConfig(env(write(good), { ADMIN_TOKEN_ACCEPTED: ` ${'a'.repeat(16)} ,${own},${'a'.repeat(16)},,${'b'.repeat(20)}` }));
  expect(c.adminAcceptedTokens).toEqual(['a'.repeat(16), 'b'.repeat(20)]);
});

test('without REGIONS_CONFIG and with no ./regions.config.json, the error names REGIONS_CONFIG', () => {
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    expect(() => loadConfig({ ...env('unused'), REGIONS_CONFIG: undefined })).toThrow(/REGIONS_CONFIG is not set/);
  } finally {
    process.chdir(cwd);
  }
});

test('two regions at one host on other ports, or under other paths, are other places: accepted', () => {
  for (const [first, second] of [['https://sso.example.com:8443', 'https://sso.example.com:9443'], ['https://sso.example.com/us', 'https://sso.example.com/asia'], ['https://sso.example.com', 'https://sso.example.com:8443']]) {
    const file = { ...good, regions: [{ ...good.regions[0], publicUrl: first }, { ...good.regions[1], publicUrl: second }] };
    expect(loadConfig(env(write(file))).regions.map((r) => r.publicUrl)).toEqual([first, second]);
  }
});

test('npm start refuses a file where two regions share a publicUrl, naming the field, and exits non-zero', () => {
  const main = path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');
  // Nothing reachable behind it: a region that did start (no such check) would fail on its own, not hang or write.
  const shared = {
    ...good,
    redisUrl: 'redis://127.0.0.1:1',
    regions: good.regions.map((r) => ({ ...r, databaseUrl: 'postgresql://postgres@127.0.0.1:1/none', publicUrl: 'https://sso.example.com' })),
  };
  const res = spawnSync(process.execPath, [main], { env: { ...process.env, ...env(write(shared)) }, encoding: 'utf8', timeout: 20_000 });
  expect(res.status).toBe(2);
  expect(res.stderr).toMatch(/configuration error: .*regions\.1\.publicUrl: 'https:\/\/sso\.example\.com' is also the publicUrl of region 'us-iowa'/);
  // The same host by another scheme is refused so too.
  const schemes = { ...shared, regions: shared.regions.map((r, i) => ({ ...r, publicUrl: i === 0 ? 'https://sso.example.com' : 'http://sso.example.com' })) };
  const other = spawnSync(process.execPath, [main], { env: { ...process.env, ...env(write(schemes)) }, encoding: 'utf8', timeout: 20_000 });
  expect(other.status).toBe(2);
  expect(other.stderr).toMatch(/configuration error: .*regions\.1\.publicUrl: 'http:\/\/sso\.example\.com' is also the publicUrl of region 'us-iowa'/);
});

test('a publicUrl refused for its user and password is named without the password (the refusal is printed, and logged where the start is)', () => {
  const main = path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');
  const withSecret = {
    ...good,
    redisUrl: 'redis://127.0.0.1:1',
    regions: good.regions.map((r, i) => ({ ...r, databaseUrl: 'postgresql://postgres@127.0.0.1:1/none', ...(i === 0 ? { publicUrl: 'https://console:hunter2-secret@sso.example.com/us' } : {}) })),
  };
  expect(() => loadConfig(env(write(withSecret)))).toThrow(/regions\.0\.publicUrl: 'https:\/\/console:\*\*\*@sso\.example\.com\/us' must be an absolute http\(s\) URL with no query, fragment, user or password/);
  const res = spawnSync(process.execPath, [main], { env: { ...process.env, ...env(write(withSecret)) }, encoding: 'utf8', timeout: 20_000 });
  expect(res.status).toBe(2);
  expect(res.stderr).toMatch(/configuration error: .*regions\.0\.publicUrl: 'https:\/\/console:\*\*\*@sso\.example\.com\/us' must be/);
  expect(res.stdout + res.stderr).not.toContain('hunter2-secret');
  // A password with an unencoded '/' (no URL parser reads it as a password) is masked too.
  const slashed = { ...withSecret, regions: [{ ...withSecret.regions[0], publicUrl: 'https://console:hunter2/secret@sso.example.com' }, withSecret.regions[1]] };
  expect(() => loadConfig(env(write(slashed)))).toThrow(/regions\.0\.publicUrl: 'https:\/\/console:\*\*\*@sso\.example\.com' must be/);
  // So is one with an unencoded '?' or '#' (read as the start of a query or fragment, it hid the '@').
  for (const secret of ['hunter2?secret', 'hunter2#secret', 'hun#ter2?sec@ret']) {
    const odd = { ...withSecret, regions: [{ ...withSecret.regions[0], publicUrl: `https://console:${secret}@sso.example.com/us` }, withSecret.regions[1]] };
    let message = '';
    try {
      loadConfig(env(write(odd)));
    } catch (err) {
      message = (err as Error).message;
    }
    expect({ secret, message }).toEqual({ secret, message: expect.stringContaining("regions.0.publicUrl: 'https://console:***@sso.example.com/us' must be") });
    expect(message).not.toContain('hunter2');
  }
});

test('npm start refuses to start without ADMIN_TOKEN, naming it, and exits non-zero', () => {
  const main = path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');
  const res = spawnSync(process.execPath, [main], { env: { ...process.env, REGIONS_CONFIG: write(good), REGION: 'us-iowa', ADMIN_TOKEN: '' }, encoding: 'utf8' });
  expect(res.status).toBe(2);
  expect(res.stderr).toMatch(/configuration error: ADMIN_TOKEN/);
});

test('LOG_LEVEL is taken in any case and with spaces around it; unset, info', () => {
  expect(loadConfig(env(write(good), { LOG_LEVEL: 'WARN' })).logLevel).toBe('warn');
  expect(loadConfig(env(write(good), { LOG_LEVEL: ' Debug ' })).logLevel).toBe('debug');
  expect(loadConfig(env(write(good))).logLevel).toBe('info');
});

test('npm start refuses an unknown LOG_LEVEL with one line naming it (pino threw a stack), and exits non-zero', () => {
  const main = path.join(PROJECT_ROOT, 'dist', 'src', 'main.js');
  const res = spawnSync(process.execPath, [main], { env: { ...process.env, ...env(write(good), { LOG_LEVEL: 'verbose' }) }, encoding: 'utf8' });
  expect(res.status).toBe(2);
  expect(res.stderr).toBe("configuration error: LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got 'verbose'\n");
});

test('a relative REGIONS_CONFIG is read from the directory the command was run in (npm runs scripts in the root)', () => {
  expect(regionsConfigPath({ REGIONS_CONFIG: '../regions.x.json', INIT_CWD: '/srv/app/deploy' })).toBe('/srv/app/regions.x.json');
  expect(regionsConfigPath({ REGIONS_CONFIG: '/etc/saml/regions.json', INIT_CWD: '/srv/app/deploy' })).toBe('/etc/saml/regions.json');
  // Without npm, from the process's own directory; without REGIONS_CONFIG, the package's file.
  expect(regionsConfigPath({ REGIONS_CONFIG: 'r.json' })).toBe(path.resolve('r.json'));
  expect(regionsConfigPath({ INIT_CWD: '/srv/app/deploy' })).toBe(path.resolve('regions.config.json'));
  const file = write(good);
  const config = loadConfig({ REGIONS_CONFIG: path.basename(file), INIT_CWD: path.dirname(file), REGION: 'us-iowa', ADMIN_TOKEN: 'a'.repeat(32), TOKEN_SIGNING_SECRET: 'b'.repeat(32), REPLICATION_KEYS: `k1:${'c'.repeat(32)}` });
  expect(config.region.id).toBe('us-iowa');
});
