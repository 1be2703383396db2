/**
 * `npm run config:validator`: writes src/config-validate.ts, the regions file's validator (ConfigFileSchema,
 * src/config-schema.ts) as ajv's standalone code (https://ajv.js.org/standalone.html), compiled with the options
 * of the service's other validators (src/http/validate.ts). src/config.ts uses it, so that reading the config (a
 * region's start, each operator command, the health check) loads neither TypeBox nor ajv's compiler: they cost
 * ~190 ms of CPU a process (docs/performance.md). Checked in, not built into dist/: the tests (ts-jest) and the
 * image's build (tsc alone) compile src/ as it is. test/config-validate.test.ts fails when it is stale.
 */
import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import standaloneCode from 'ajv/dist/standalone';
import { ConfigFileSchema } from '../src/config-schema';
import { AJV_OPTIONS } from '../src/http/validate';
import { PROJECT_ROOT } from '../src/paths';
import { answerHelp } from './usage';

export const CONFIG_VALIDATOR_FILE = path.join(PROJECT_ROOT, 'src', 'config-validate.ts');

const HEADER = `// @ts-nocheck: ajv's code, untyped; src/config.ts gives it its type.
// Written by scripts/config-validator.ts (npm run config:validator) from ConfigFileSchema (src/config-schema.ts):
// ajv's standalone code of it. Do not edit; test/config-validate.test.ts fails when it is stale.
`;

/** The text of src/config-validate.ts as the schema and the installed ajv make it now. */
export function configValidatorSource(): string {
  // No formats: the schema uses none (strict mode refuses an unknown one here, so a format added fails loudly).
  const ajv = new Ajv({ ...AJV_OPTIONS, code: { source: true, esm: true, lines: true } });
  return `${HEADER}${standaloneCode(ajv, ajv.compile(ConfigFileSchema))}\n`;
}

const USAGE = `usage: npm run config:validator

Writes src/config-validate.ts, the regions file's validator, from ConfigFileSchema (src/config-schema.ts).`;

if (require.main === module) {
  // It wrote the file for --help too.
  answerHelp(process.argv.slice(2), USAGE);
  fs.writeFileSync(CONFIG_VALIDATOR_FILE, configValidatorSource());
  process.stdout.write(`wrote ${path.relative(process.cwd(), CONFIG_VALIDATOR_FILE)}\n`);
}
