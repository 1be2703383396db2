/**
 * How many IdP metadata refreshes a tick runs at once, and the scheduler that runs them: several at once,
 * one per organization at a time (metadata-refresh.ts says why).
 */
/** Refreshes a tick runs at once, at most: a quarter of the region's fetch slots (API creates keep the rest), at least one. */
export const REFRESH_CONCURRENCY = 4;

export function refreshConcurrency(perRegion: number): number {
  return Math.max(1, Math.min(REFRESH_CONCURRENCY, Math.floor(perRegion / 4)));
}

/**
 * Runs `work` on each item, at most `concurrency` at once and one per group at a time, taking the items in
 * their order among those whose group is free; resolves when every item started is done (`work` must not
 * throw). Once `stop()` answers true, no further item is started.
 */
export async function inTurns<T>(
  items: readonly T[],
  concurrency: number,
  groupOf: (item: T) => string,
  work: (item: T) => Promise<void>,
  stop: () => boolean = () => false,
): Promise<void> {
  const waiting = [...items];
  const busy = new Set<string>();
  let running = 0;
  await new Promise<void>((resolve) => {
    const next = (): void => {
      if (stop()) waiting.length = 0;
      while (running < concurrency) {
        const i = waiting.findIndex((item) => !busy.has(groupOf(item)));
        if (i < 0) break;
        const [item] = waiting.splice(i, 1) as [T];
        const group = groupOf(item);
        busy.add(group);
        running += 1;
        void work(item).catch(() => undefined).finally(() => {
          busy.delete(group);
          running -= 1;
          next();
        });
      }
      if (running === 0 && waiting.length === 0) resolve();
    };
    next();
  });
}
