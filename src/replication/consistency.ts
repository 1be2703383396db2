/**
 * Consistency levels (SlashID-Required-Consistency / -Timeout) and the wait that implements them.
 * The deadline starts when the request arrives. A timeout never cancels the write: a local commit that
 * is still running goes on, and a committed change keeps replicating.
 */
import type { Request } from 'express';
import { AppError, badRequest } from '../http/errors';
import type { Replicator } from './replicator';
import type { ChangeEvent } from './tables';

export type ConsistencyLevel = 'local_region' | 'all_regions';

export interface Consistency {
  level: ConsistencyLevel;
  timeoutSeconds: number;
  deadline: number;
}

export const DEFAULT_TIMEOUT_SECONDS = 30;

export function parseConsistency(req: Request, startedAt = Date.now()): Consistency {
  const rawLevel = req.get('SlashID-Required-Consistency');
  const level = rawLevel === undefined || rawLevel === '' ? 'local_region' : rawLevel;
  if (level !== 'local_region' && level !== 'all_regions') {
    throw badRequest(`SlashID-Required-Consistency must be 'local_region' or 'all_regions' (got '${rawLevel}').`);
  }
  const rawTimeout = req.get('SlashID-Required-Consistency-Timeout');
  let timeoutSeconds = DEFAULT_TIMEOUT_SECONDS;
  if (rawTimeout !== undefined && rawTimeout !== '') {
    if (!/^\d{1,3}$/.test(rawTimeout.trim()) || Number(rawTimeout) < 1 || Number(rawTimeout) > 120) {
      throw badRequest(`SlashID-Required-Consistency-Timeout must be a whole number of seconds from 1 to 120 (got '${rawTimeout}').`);
    }
    timeoutSeconds = Number(rawTimeout);
  }
  return { level, timeoutSeconds, deadline: startedAt + timeoutSeconds * 1000 };
}

export interface WriteOutcome<T> {
  value: T;
  changeId: string | null;
}

/**
 * Runs a replicated write and waits for the requested level. Resolves with the value when reached;
 * throws a 408 AppError (carrying `toResult(value)` when the write committed) when not.
 */
export async function writeWithConsistency<T>(
  repl: Replicator,
  c: Consistency,
  write: () => Promise<{ value: T; event: ChangeEvent | null }>,
  toResult: (value: T) => unknown,
  onChangeId: (changeId: string) => void = () => undefined,
): Promise<WriteOutcome<T>> {
  if (Date.now() >= c.deadline) {
    // Work before the write (the IdP metadata fetch) used up the whole timeout: write nothing, so the
    // caller knows exactly where it stands.
    throw new AppError(
      408,
      'consistency_timeout',
      `The request used up its ${c.timeoutSeconds} s timeout before the write could start (fetching the IdP metadata took that long); nothing was written. Retry with a longer SlashID-Required-Consistency-Timeout.`,
    );
  }
  const pending = write();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), Math.max(0, c.deadline - Date.now()));
  });
  let committed: { value: T; event: ChangeEvent | null } | null;
  try {
    committed = await Promise.race([pending, timedOut]);
  } finally {
    clearTimeout(timer);
  }
  if (committed === null) {
    pending.catch(() => undefined); // it finishes (or fails) on its own; the caller was told 408
    throw new AppError(
      408,
      'consistency_timeout',
      `The write did not commit in ${repl.region} within ${c.timeoutSeconds} s. It was not cancelled and may still complete.`,
    );
  }
  const changeId = committed.event?.changeId ?? null;
  if (changeId) onChangeId(changeId);
  if (c.level === 'local_region' || !changeId) return { value: committed.value, changeId };
  const waited = await repl.waitForAllRegions(changeId, c.deadline);
  if (waited.complete) return { value: committed.value, changeId };
  throw new AppError(
    408,
    'consistency_timeout',
    `all_regions consistency was not reached within ${c.timeoutSeconds} s: applied in ${waited.applied.join(', ')}; ` +
      `still pending in ${waited.pending.join(', ')}. The write is committed and keeps replicating; ` +
      `follow up with GET /admin/replication/changes/${changeId}.`,
    { result: toResult(committed.value) },
  );
}
