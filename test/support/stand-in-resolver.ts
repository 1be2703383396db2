/**
 * A stand-in for the system resolver behind the metadata fetcher's lookup gate (src/metadata/lookup-gate.ts):
 * "idp.test" answers at once with loopback, names starting with "hung" only when the test releases them,
 * anything else is not found. `calls` lists the names asked, in order.
 */
import type { LookupAddress } from 'node:dns';
import type { ResolveHost } from '../../src/metadata/fetch-metadata';

const LOOPBACK: LookupAddress[] = [{ address: '127.0.0.1', family: 4 }];

export function standInResolver() {
  const calls: string[] = [];
  const hung = new Map<string, () => void>();
  const resolve: ResolveHost = (hostname) => {
    calls.push(hostname);
    if (hostname === 'idp.test') return Promise.resolve(LOOPBACK);
    if (hostname.startsWith('hung')) return new Promise((answer) => hung.set(hostname, () => answer(LOOPBACK)));
    return Promise.reject(Object.assign(new Error(`no ${hostname}`), { code: 'ENOTFOUND' }));
  };
  const release = (hostname: string): void => hung.get(hostname)?.();
  return { resolve, calls, release, releaseAll: () => [...hung.keys()].forEach(release) };
}
