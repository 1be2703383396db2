/**
 * libuv's thread pool for a region process: 16 threads unless UV_THREADPOOL_SIZE is set. libuv reads the
 * variable once, when the pool is first used, so this module is main.ts's first import (nothing before it
 * queues work on the pool). Why more than libuv's 4: host-name lookups run on at most half the pool, and a
 * lookup that never answers keeps its thread until the system resolver gives up; with 4 threads the metadata
 * fetcher's lookup gate (metadata/lookup-gate.ts) could run one lookup at once, so one organization's IdP host
 * whose DNS hangs made every other organization's fetch of a new host name wait or be refused. With 16 the
 * gate runs 7, at most 3 of them for one organization, and file reads, zlib and the other half of the pool keep 8. Idle threads cost no CPU and little
 * memory (their stacks are reserved, not touched).
 */
import { DEFAULT_THREADPOOL_SIZE } from './threadpool-size';

if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(DEFAULT_THREADPOOL_SIZE);
