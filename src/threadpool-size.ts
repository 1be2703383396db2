/**
 * UV_THREADPOOL_SIZE as this service reads it, in one place and without side effects (threadpool.ts sets it on
 * import; config.ts checks it; the lookup gate sizes its lanes from it).
 */

/** The pool a region process takes when UV_THREADPOOL_SIZE is unset (threadpool.ts says why). */
export const DEFAULT_THREADPOOL_SIZE = 16;
/** libuv's own pool size, for a process that did not load threadpool.ts (jest's). */
export const LIBUV_DEFAULT_THREADPOOL_SIZE = 4;

/**
 * The pool size a value of UV_THREADPOOL_SIZE asks for: undefined when unset or empty, null when it is not a
 * whole number from 1 to 1024 (libuv's bounds).
 */
export function threadPoolSize(v: string | undefined): number | undefined | null {
  if (v === undefined || v === '') return undefined;
  const n = /^[0-9]{1,4}$/.test(v) ? Number(v) : NaN;
  return n >= 1 && n <= 1024 ? n : null;
}
