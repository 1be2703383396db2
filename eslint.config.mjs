// ESLint 9 flat config: typescript-eslint's recommended rules, import cycles, and the layering of src/.
import js from '@eslint/js';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import { importX } from 'eslint-plugin-import-x';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// Features: each owns a capability (STYLE.md "Layout shows the architecture").
const FEATURES = ['organizations', 'provider-credentials', 'infisical', 'idempotency', 'metadata'];

/** `no-restricted-imports` patterns forbidding the given module paths, whatever the relative depth. */
function forbid(modules, message) {
  return {
    patterns: [{ regex: `^(\\.\\.?/)+(${modules.join('|')})(/|$)`, message }],
  };
}

export default tseslint.config(
  // src/config-validate.ts: ajv's code, written by scripts/config-validator.ts.
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'src/generated/', '.cluster/', 'src/config-validate.ts'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    plugins: { 'import-x': importX },
    settings: {
      // Without these, import-x parses only .js files and sees no cycle through .ts modules.
      'import-x/extensions': importX.flatConfigs.typescript.settings['import-x/extensions'],
      'import-x/parsers': importX.flatConfigs.typescript.settings['import-x/parsers'],
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    languageOptions: { globals: { ...globals.node } },
    rules: {
      'import-x/no-cycle': 'error',
      // A `let` assigned once after a closure that reads it (a timer cleared by a callback) cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Untrusted text (IdP metadata, stored strings) is sanitized by matching control characters on purpose.
      'no-control-regex': 'off',
      // Unused parameters are named `_x` where a signature needs them (Express error handlers, reporters).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // Plain CommonJS files (jest reporter): require/module.exports are their module system.
    files: ['**/*.js', '**/*.cjs'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // Plumbing serves every feature and so may import none of them (STYLE.md "Fix as you touch them").
    files: ['src/http/**', 'src/db/**', 'src/config.ts', 'src/logger.ts', 'src/redis.ts', 'src/paths.ts'],
    rules: {
      'no-restricted-imports': ['error', forbid([...FEATURES, 'replication', 'features?'], 'src/http, src/db and the other plumbing modules may not import a feature; move the code to the feature or to a neutral module.')],
    },
  },
  {
    // The replication protocol is one module that features plug into; it knows no feature and no dialect.
    files: ['src/replication/**'],
    rules: {
      'no-restricted-imports': ['error', forbid([...FEATURES, 'features?', 'http/slashid', 'http/admin-auth'], 'src/replication may not import a feature or a dialect (http/slashid); features declare what they replicate.')],
    },
  },
  {
    // Tests read JSON answers as `any` (ApiResponse<T = any>); the service itself keeps the rule.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
