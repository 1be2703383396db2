// Runs the longest test files first, so that neither of the two workers is left with a long file at the end
// of the run while the other one idles. jest's own order uses the durations of the last run on this
// machine (its cache) and, on a fresh clone such as CI's, the files' sizes, which put a 2-minute file among
// the last. The durations of a whole run are kept in test/support/durations.json (`npm run test:durations`
// after a `npx jest --json --outputFile=/tmp/jest.json` rewrites it); a file missing there (a new one) takes
// the duration of its last run in jest's cache, or else counts as UNKNOWN_SECONDS.
const path = require('node:path');
const Sequencer = require('@jest/test-sequencer').default;

const DURATIONS = require('./durations.json');
const UNKNOWN_SECONDS = 20;
const ROOT = path.join(__dirname, '..', '..');

class LongestFirst extends Sequencer {
  sort(tests) {
    const seconds = (test) => DURATIONS[path.relative(ROOT, test.path)] ?? (this.time(test) ?? UNKNOWN_SECONDS * 1000) / 1000;
    return [...tests].sort((a, b) => seconds(b) - seconds(a));
  }
}
module.exports = LongestFirst;
