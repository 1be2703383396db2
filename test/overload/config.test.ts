import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { admissionLimits, ConfigError, readConfigFile } from '../../src/config';
import { DEFAULT_ADMISSION } from '../../src/http/admission';

function write(extra: Record<string, unknown>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'admission-config-'));
  const p = path.join(dir, 'regions.config.json');
  fs.writeFileSync(p, JSON.stringify({ redisUrl: 'redis://127.0.0.1:6379', redisKeyPrefix: 't:', regions: [{ id: 'us-iowa', port: 1, databaseUrl: 'postgresql://x/y' }], ...extra }));
  return p;
}

test('admission fields left out take the defaults; given ones override them', () => {
  expect(admissionLimits(readConfigFile(write({})))).toEqual(DEFAULT_ADMISSION);
  const limits = admissionLimits(readConfigFile(write({ admission: { writes: { queue: 50 }, retryAfterSeconds: 7 } })));
  expect(limits.writes).toEqual({ ...DEFAULT_ADMISSION.writes, queue: 50 });
  expect(limits.retryAfterSeconds).toBe(7);
  const more = admissionLimits(readConfigFile(write({ admission: { reads: { concurrency: 3 }, databaseSlots: 8 } })));
  expect(more.reads).toEqual({ ...DEFAULT_ADMISSION.reads, concurrency: 3 });
  expect(more.writes).toEqual(DEFAULT_ADMISSION.writes);
  expect(more.databaseSlots).toBe(8);
  expect(admissionLimits(readConfigFile(write({ admission: { databaseSlots: 3 } }))).databaseSlots).toBe(3);
});

test.each([
  [{ writes: { concurrency: 0 } }, /admission\.writes\.concurrency: must be >= 1/],
  [{ reads: { queueWaitMs: 200_000 } }, /admission\.reads\.queueWaitMs: must be <= 120000/],
  [{ writes: { burst: 3 } }, /admission\.writes: must NOT have additional properties 'burst'/],
  [{ retryAfterSeconds: 0 }, /admission\.retryAfterSeconds: must be >= 1/],
  [{ databaseSlots: 10 }, /admission\.databaseSlots is 10; it must be at most 8/],
  [{ databaseSlots: 9 }, /admission\.databaseSlots is 9; it must be at most 8/],
])('refuses admission %j naming the field', (admission, message) => {
  expect(() => readConfigFile(write({ admission }))).toThrow(ConfigError);
  expect(() => readConfigFile(write({ admission }))).toThrow(message);
});
