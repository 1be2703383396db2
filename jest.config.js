// Two projects. `unit`: tests that need no Postgres, no Redis and no build (dist/), only the generated Prisma
// client (`npm run generate`: two of them import src/db), so `npm run test:unit` answers in seconds. `integration`: every other test, including a new file until it is listed here.
const UNIT = [
  'test/harness/delay-proxy.test.ts',
  'test/harness/ack-signatures-flag.test.ts',
  'test/replication/consistency.test.ts',
  'test/replication/ack-auth.test.ts',
  'test/replication/hlc.test.ts',
  'test/replication/hlc-next.test.ts',
  'test/http/*.test.ts',
  'test/idempotency/request.test.ts',
  'test/infisical/errors.test.ts',
  'test/organizations/api-key-cache-race.test.ts',
  'test/overload/slot-budget.test.ts',
  'test/provider-credentials/fetch-limiter.test.ts',
  'test/metadata/*.test.ts',
  'test/replication/horizon.test.ts',
  'test/replication/deadlines.test.ts',
  'test/replication/owned-losses.test.ts',
  'test/tables.test.ts',
  'test/bench/options.test.ts',
  'test/readme/doc-links.test.ts',
  'test/build-if-stale.test.ts',
  'test/config-validate.test.ts',
];

const asRegex = (glob) => '<rootDir>/' + glob.replace(/\./g, '\\.').replace(/\*/g, '[^/]*') + '$';

const common = {
  testEnvironment: 'node',
  rootDir: __dirname,
  roots: ['<rootDir>/test'],
  transform: { '^.+\\.ts$': 'ts-jest' },
  // Every answer of the service a test receives is checked against its OpenAPI document.
  setupFilesAfterEnv: ['<rootDir>/test/support/openapi-setup.ts'],
};

/** @type {import('jest').Config} */
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: UNIT.map((glob) => `<rootDir>/${glob}`) },
    { ...common, displayName: 'integration', testMatch: ['**/*.test.ts'], testPathIgnorePatterns: ['/node_modules/', ...UNIT.map(asRegex)] },
  ],
  // The OpenAPI document the answers are checked against, built once per run (test/support/openapi-check.ts).
  globalSetup: '<rootDir>/test/support/openapi-global-setup.ts',
  globalTeardown: '<rootDir>/test/support/openapi-global-teardown.ts',
  testTimeout: 60000,
  // Three files at a time on the 2-core hosts: most files wait on region processes, timers and Redis (with two,
  // a third of the CPU sat idle; the suite took 739 s with two and 520 s with three: docs/testing.md).
  maxWorkers: 3,
  // The longest files first (test/support/durations.json), so no long file is left for the end of a run.
  testSequencer: '<rootDir>/test/support/sequencer.js',
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
};
