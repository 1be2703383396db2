#!/usr/bin/env node
// Rewrites test/support/durations.json (the order test/support/sequencer.js runs the files in) from the
// report of a whole jest run: `npx jest --json --outputFile=/tmp/jest.json`, then
// `npm run test:durations -- /tmp/jest.json`.
const fs = require('node:fs');
const path = require('node:path');

const report = process.argv[2];
if (!report) {
  console.error('usage: npm run test:durations -- <jest --json report>');
  process.exit(2);
}
const root = path.join(__dirname, '..');
const { testResults } = JSON.parse(fs.readFileSync(report, 'utf8'));
const seconds = Object.fromEntries(
  testResults
    .map((r) => [path.relative(root, r.name), Math.round((r.endTime - r.startTime) / 100) / 10])
    .sort((a, b) => b[1] - a[1]),
);
fs.writeFileSync(path.join(root, 'test', 'support', 'durations.json'), JSON.stringify(seconds, null, 2) + '\n');
console.log(`${Object.keys(seconds).length} test files`);
