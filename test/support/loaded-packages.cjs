/**
 * Preloaded into a region process (`NODE_OPTIONS=--require …/loaded-packages.cjs`, `LOADED_PACKAGES_FILE=path`):
 * appends to that file, one per line, the package each bare module id names (`undici`, `xml-crypto`; `lodash`
 * for `lodash/get`, `@xmldom/xmldom` for `@xmldom/xmldom/lib/dom`) the first time any module of the process or
 * of its worker threads requires it. A package reached only through a path inside it counts as loaded too.
 * test/on-first-use.test.ts reads it.
 */
const fs = require('node:fs');
const Module = require('node:module');
const file = process.env.LOADED_PACKAGES_FILE;
const seen = new Set();
const load = Module._load;
Module._load = function (request, parent, ...rest) {
  if (file && !/^(\.|\/|node:)/.test(request) && !Module.isBuiltin(request)) {
    const name = request.split('/').slice(0, request.startsWith('@') ? 2 : 1).join('/');
    if (!seen.has(name)) {
      seen.add(name);
      fs.appendFileSync(file, `${name}\n`);
    }
  }
  return load.call(this, request, parent, ...rest);
};
