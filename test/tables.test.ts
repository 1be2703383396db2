/** src/tables.ts (what `npm run reseed` copies) lists exactly the tables the features replicate, in their order. */
import { FEATURES } from '../src/features';
import { REPLICATED_TABLES } from '../src/tables';

test("REPLICATED_TABLES are the features' tables, in the same order", () => {
  expect(REPLICATED_TABLES.map((t) => t.name)).toEqual(FEATURES.flatMap((f) => f.tables).map((t) => t.name));
  expect(REPLICATED_TABLES).toEqual(FEATURES.flatMap((f) => f.tables));
});
