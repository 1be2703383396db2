/**
 * Preloaded into a region process (`NODE_OPTIONS=--require …/loaded-packages.cjs`, `LOADED_PACKAGES_FILE=path`):
 * appends to that file, one per line, each bare module id (`undici`, `xml-crypto`, `lodash/get`) the process
 * requires, from any module, when it is first required. test/on-first-use.test.ts reads it.
 */
const fs = require('node:fs');
const Module = require('node:module');
const file = process.env.LOADED_PACKAGES_FILE;
const seen = new Set();
const load = Module._load;
Module._load = function (request, parent, ...rest) {
  const bare = !/^(\.|\/|node:)/.test(request);
  if (file && bare && !seen.has(request)) {
    seen.add(request);
    fs.appendFileSync(file, `${request}\n`);
  }
  return load.call(this, request, parent, ...rest);
};
