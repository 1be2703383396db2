/**
 * src/config-validate.ts, the regions file's validator compiled ahead by scripts/config-validator.ts: it is what
 * the schema and the installed ajv make now (else `npm run config:validator` writes it again), and it judges a
 * file as ajv's run-time compile of ConfigFileSchema, the validator it replaced, does: the same verdict and
 * the same errors, which src/config.ts turns into its messages.
 */
import fs from 'node:fs';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { CONFIG_VALIDATOR_FILE, configValidatorSource } from '../scripts/config-validator';
import { ConfigFileSchema } from '../src/config-schema';
import { validate as precompiled } from '../src/config-validate';
import { compile } from '../src/http/validate';

test('src/config-validate.ts is what scripts/config-validator.ts writes from the schema (else: npm run config:validator)', () => {
  expect(fs.readFileSync(CONFIG_VALIDATOR_FILE, 'utf8') === configValidatorSource()).toBe(true);
});

const region = { id: 'us-iowa', port: 8081, databaseUrl: 'postgresql://postgres@127.0.0.1:5432/a' };
const good = { redisUrl: 'redis://127.0.0.1:6379', redisKeyPrefix: 'saml:', regions: [region] };

/** Files it accepts, then files breaking every rule of the schema, alone and several at once. */
const ACCEPTED: [string, unknown][] = [
  ['the least a file holds', good],
  ['optional fields', { ...good, ackSignatures: 'require', replicationPacks: false, metadataAllowedHosts: ['127.0.0.1:9400'], tombstoneCollection: { enabled: true, batchSize: 10 } }],
  ["a region's optional fields (a host of one astral character)", { ...good, regions: [{ ...region, host: '😀', publicUrl: 'https://a.example', redisUrl: 'rediss://r', operatorPort: 9000 }] }],
  ['admission at its bounds', { ...good, admission: { reads: { concurrency: 64, queue: 100_000, queueWaitMs: 1 }, databaseSlots: 1, retryAfterSeconds: 3600 } }],
];
const REFUSED: [string, unknown][] = [
  ['null', null],
  ['an array', []],
  ['a string', 'text'],
  ['an empty object', {}],
  ['no Redis fields, no region', { regions: [] }],
  ['a bad redisUrl and redisKeyPrefix, an unknown field', { ...good, redisUrl: 'http://x', redisKeyPrefix: 'a b', extra: 1 }],
  ['a redisKeyPrefix too long', { ...good, redisKeyPrefix: 'x'.repeat(65) }],
  ['33 regions', { ...good, regions: Array.from({ length: 33 }, (_, i) => ({ ...region, id: `r${i}` })) }],
  ['region ids and ports out of their patterns and ranges', { ...good, regions: [{ ...region, id: 'constructor' }, { ...region, id: 'Upper', port: 0 }, { ...region, port: 65536.5 }, 'not an object'] }],
  ["every optional field of a region wrong", { ...good, regions: [{ ...region, databaseUrl: 'mysql://x', host: '', publicUrl: 'ftp://x', redisUrl: 7, operatorPort: '9000', other: true }] }],
  ['a region without its required fields', { ...good, regions: [{ port: 8081 }] }],
  ['metadata fields wrong', { ...good, metadataAllowedHosts: ['a b:1', 'host', 3], metadataRefreshIntervalSeconds: 0, adoptAfterSeconds: 86_401 }],
  ['numbers out of range or of the wrong type', { ...good, maxCredentialsPerOrg: 1.5, maxClockSkewMs: -1, samlClockSkewSeconds: 601, streamMaxLength: 99, streamTrimIntervalMs: 'x' }],
  ['metadataFetchConcurrency out of range', { ...good, metadataFetchConcurrency: { perOrg: 0, perRegion: 1001, waitMs: -1, other: 1 } }],
  ['metadataFetchConcurrency an array', { ...good, metadataFetchConcurrency: [] }],
  ['replicationPacks a string, ackSignatures no mode', { ...good, replicationPacks: 'yes', ackSignatures: 'always' }],
  ['ackSignatures a number', { ...good, ackSignatures: 3 }],
  ['ackSignatures null', { ...good, ackSignatures: null }],
  ['replication timings out of range', { ...good, writeTransactionTimeoutMs: 999, republishAfterMs: 3_600_001, claimIntervalMs: 99, ackTtlSeconds: 59 }],
  ['tombstoneCollection wrong', { ...good, tombstoneCollection: { enabled: 1, intervalMs: 300_001, minAgeMs: -1, batchSize: 10_001, x: 0 } }],
  ['admission wrong', { ...good, admission: { writes: { concurrency: 0, queue: -1, queueWaitMs: 120_001, x: 1 }, reads: 'x', databaseSlots: 65, retryAfterSeconds: 0, y: 2 } }],
];

/** An error as src/config.ts may read it: every field, its schema and parent schema as their JSON. */
const comparable = (errors: ErrorObject[] | null | undefined) =>
  (errors ?? []).map(({ schema, parentSchema, ...rest }) => ({ ...rest, schema: JSON.stringify(schema), parentSchema: JSON.stringify(parentSchema) }));

test.each([...ACCEPTED.map(([what, file]) => [what, file, true] as const), ...REFUSED.map(([what, file]) => [what, file, false] as const)])(
  'the precompiled validator judges a file of %s as the run-time compile does',
  (_what, file, valid) => {
    const atRunTime = compile(ConfigFileSchema);
    const ahead = precompiled as unknown as ValidateFunction;
    const expected = { valid: atRunTime(file), errors: comparable(atRunTime.errors) };
    expect(expected.valid).toBe(valid);
    expect({ valid: ahead(file), errors: comparable(ahead.errors) }).toEqual(expected);
  },
);
