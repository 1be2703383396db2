/**
 * Makes certain the moment a concurrent write lands between two statements of one answer: the pool's queries
 * that `reads` matches run one after the other, and once the first is done, `write` commits (on the pool, past
 * this hook) before the next starts. For the lists, whose page and total must be read at one moment.
 */
import type { Pool } from 'pg';

export async function withWriteAfterFirstRead<T>(
  pool: Pool,
  reads: (query: { text: string; values: unknown[] }) => boolean,
  write: { text: string; values: unknown[] },
  run: () => Promise<T>,
): Promise<{ result: T; written: boolean }> {
  const query = pool.query;
  const original = query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
  let queue: Promise<unknown> = Promise.resolve();
  let written = false;
  const asQuery = (q: unknown) => {
    const given = (typeof q === 'string' ? { text: q } : (q ?? {})) as { text?: string; values?: unknown[] };
    return { text: given.text ?? '', values: given.values ?? [] };
  };
  pool.query = ((...args: unknown[]) => {
    const q = asQuery(args[0]);
    if (!reads({ text: q.text, values: Array.isArray(args[1]) ? args[1] : q.values })) return original(...args);
    const step = queue.then(async () => {
      const result = await original(...args);
      if (!written) {
        written = true;
        await original(write);
      }
      return result;
    });
    queue = step.catch(() => undefined);
    return step;
  }) as typeof query;
  try {
    return { result: await run(), written };
  } finally {
    pool.query = query;
  }
}
