/**
 * Compiles every response schema the OpenAPI check may use (openapi-check.ts, bodySchemas) once per run, in
 * jest's global setup, into CommonJS modules of ajv's standalone code (https://ajv.js.org/standalone.html).
 * Compiled in each test file instead (jest gives every file a fresh module registry, so a fresh ajv), the
 * compiles were most of the check's CPU. Same ajv options and formats as the fallback (newAjv), so a body is
 * held to exactly what it was.
 */
import fs from 'node:fs';
import path from 'node:path';
import { _ } from 'ajv';
import standaloneCode from 'ajv/dist/standalone';
import { bodySchemas, INDEX_FILE, newAjv, VALIDATORS_DIR } from './openapi-check';

type Json = Record<string, any>;

/**
 * The generated code requires ajv's runtime helpers and ajv-formats' formats by package name; the modules are
 * written in a temporary folder, where no node_modules would resolve them, so they are required by path.
 */
function requireByPath(code: string): string {
  return code.replace(/require\("([^"./][^"]*)"\)/g, (_match, name: string) => `require(${JSON.stringify(require.resolve(name))})`);
}

/**
 * Writes the validators in a folder beside the document (in `dir`), a module each: the largest are 50–220 kB
 * (the replication views), and one module of them all (2.6 MB) cost each test file more to load than the few
 * validators it uses.
 */
export function writeValidators(doc: Json, dir: string): void {
  const out = path.join(dir, VALIDATORS_DIR);
  fs.mkdirSync(out);
  const formats = require.resolve('ajv-formats/dist/formats');
  const ajv = newAjv({ code: { source: true, formats: _`require(${formats}).fullFormats` } });
  const index: Record<string, string> = {};
  let n = 0;
  for (const [key, schema] of bodySchemas(doc)) {
    const file = `${n++}.js`;
    fs.writeFileSync(path.join(out, file), requireByPath(standaloneCode(ajv, ajv.compile(schema))));
    index[key] = file;
  }
  fs.writeFileSync(path.join(out, INDEX_FILE), JSON.stringify(index));
}
