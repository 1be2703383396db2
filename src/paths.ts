import fs from 'node:fs';
import path from 'node:path';

/** The repository root, whether running from src/ (ts-jest, tsx) or from dist/src/ (compiled). */
export const PROJECT_ROOT = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the project root (package.json) above ' + __dirname);
    dir = up;
  }
  return dir;
})();
