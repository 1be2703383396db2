/**
 * A migration that main has shipped is never edited or deleted: a database it ran keeps its checksum, and a
 * region then refuses to start on it ("changed after it was applied"), or lacks what the edit added. Four
 * such edits once stopped upgrades (src/db/edited-migrations.ts repairs those). Every migration's checksum is
 * recorded in test/fixtures/migration-checksums.json; a new migration adds its line there, and a change to a
 * recorded one fails here: write a new migration instead.
 */
import fs from 'node:fs';
import path from 'node:path';
import { listMigrations } from '../../src/db/migrate';

const RECORDED = path.join(__dirname, '..', 'fixtures', 'migration-checksums.json');

test('no recorded migration was edited or deleted, and every migration is recorded', () => {
  const recorded = JSON.parse(fs.readFileSync(RECORDED, 'utf8')) as Record<string, string>;
  const current = new Map(listMigrations().map((m) => [m.name, m.checksum]));
  const problems = [
    ...Object.entries(recorded).flatMap(([name, sum]) =>
      !current.has(name)
        ? [`${name} was deleted: databases that ran it keep it; put it back, and undo it in a new migration`]
        : current.get(name) !== sum
          ? [`${name} was edited after it was recorded: put the file back and write a new migration with the change`]
          : [],
    ),
    ...[...current].filter(([name]) => !(name in recorded)).map(([name, sum]) => `${name} is not recorded: add "${name}": "${sum}" to ${RECORDED}`),
  ];
  expect(problems).toEqual([]);
});
