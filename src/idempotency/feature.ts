import type { Feature } from '../feature';
import { IdempotencyKeyCleanup } from './cleanup';
import { idempotencyKeysTable } from './store';

/** The idempotency-key table both API dialects write to, and the job that removes long-expired keys. */
export const idempotencyFeature: Feature = {
  name: 'idempotency-keys',
  tables: [idempotencyKeysTable],
  start: ({ db, log }) => {
    const cleanup = new IdempotencyKeyCleanup(db, log);
    cleanup.start();
    return () => cleanup.stop();
  },
};
