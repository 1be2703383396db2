#!/usr/bin/env node
// Rewrites test/support/durations.json (the order test/support/sequencer.js runs the files in) from the
// report of a whole jest run: `npx jest --json --outputFile=/tmp/jest.json`, then
// `npm run test:durations -- /tmp/jest.json`.
const fs = require('node:fs');
const path = require('node:path');

const USAGE = `usage: npm run test:durations -- <jest --json report>

Rewrites test/support/durations.json from the report of a whole jest run (npx jest --json --outputFile=/tmp/jest.json).`;
// Plain JavaScript, run before anything is compiled: scripts/usage.ts's answerHelp, in its words.
const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const report = args[0];
if (!report) {
  console.error(USAGE);
  process.exit(2);
}
const root = path.join(__dirname, '..');
let text;
try {
  text = fs.readFileSync(report, 'utf8');
} catch (err) {
  // A usage mistake (a report not written yet, a mistyped path): said in a line, not Node's stack.
  console.error(`test:durations failed: cannot read ${report}: ${err.message}`);
  process.exit(2);
}
const { testResults } = JSON.parse(text);
const seconds = Object.fromEntries(
  testResults
    .map((r) => [path.relative(root, r.name), Math.round((r.endTime - r.startTime) / 100) / 10])
    .sort((a, b) => b[1] - a[1]),
);
fs.writeFileSync(path.join(root, 'test', 'support', 'durations.json'), JSON.stringify(seconds, null, 2) + '\n');
console.log(`${Object.keys(seconds).length} test files`);
