// `npm test` (and `npm start`, `npm run cluster`, the operator commands, the bench) run this instead of `npm run
// build`: it builds (Prisma client + tsc) only when dist/ is missing or older than one of its inputs. A developer
// never runs a stale dist/, CI, which builds once before the typecheck and the fault schedule, does not generate
// and compile a second time for the tests, and an operator command run beside a cluster does not rewrite the
// dist/ the cluster runs from (it took 25-35 s, for nothing).
// `npm run build` writes dist/.build-stamp when it succeeds; any input touched after that makes the build stale.
// With --as-built (the operator commands that act on a running deployment: members, reseed), a stale dist/ is
// run as it is, with a warning: the regions run it, and a rebuild under them would rewrite the files a region
// loads later (a parse worker, a lazily required module) in the middle of their run. Only a missing dist/ is built.
// Plain JavaScript: it runs before anything is compiled.
const { execSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const STAMP = path.join(ROOT, 'dist', '.build-stamp');
const INPUTS = ['src', 'scripts', 'bench', 'prisma', 'prisma.config.ts', 'tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json'];
// Outputs of the build itself, not inputs.
const SKIP = new Set([path.join(ROOT, 'src', 'generated')]);

/** The newest mtime under `p` (directories count too: deleting a file changes its directory's mtime). */
function newest(p) {
  if (SKIP.has(p) || !fs.existsSync(p)) return 0;
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs;
  for (const name of fs.readdirSync(p)) max = Math.max(max, newest(path.join(p, name)));
  return max;
}

function staleReason() {
  if (!fs.existsSync(STAMP)) return 'dist/ has not been built';
  const built = fs.statSync(STAMP).mtimeMs;
  const changed = INPUTS.find((input) => newest(path.join(ROOT, input)) > built);
  return changed ? `${changed} changed since the last build` : null;
}

const reason = staleReason();
const asBuilt = process.argv.includes('--as-built');
// A dist/ compiled without `npm run build` (no stamp: the Dockerfile's `npx tsc`) counts as built too.
if (reason && asBuilt && fs.existsSync(path.join(ROOT, 'dist'))) {
  const why = fs.existsSync(STAMP) ? `is older than its inputs (${reason})` : 'was compiled without npm run build';
  console.error(`dist/ ${why}: running it as built, as the running regions do (npm run build rebuilds it)`);
} else if (reason) {
  // On stderr: a command's own output (members list, say) stays alone on stdout.
  console.error(`building: ${reason}`);
  execSync('npm run build', { cwd: ROOT, stdio: ['ignore', process.stderr, 'inherit'] });
} else {
  console.error('dist/ is up to date with its inputs: not rebuilding');
}
