/**
 * CPU time spent by the processes of one side of a benchmark run (Linux, from /proc): the HTTP process,
 * every Postgres backend and Redis (the bench's own server when its pid is known: redisServerPid). Divided by the requests answered, it is the cost of one request, a
 * figure that a noisy shared machine moves much less than requests per second (another tenant's load
 * slows the run but does not add CPU time to these processes). Elsewhere than Linux, nothing is measured.
 */
import fs from 'node:fs';
import os from 'node:os';

const TICK_US = 1e6 / 100; // USER_HZ: 100 on every Linux architecture Node runs on

export interface CpuSample {
  process: number;
  postgres: number;
  redis: number;
}

/**
 * user + system CPU of a process (all its threads), in µs; 0 when it is gone. With `reaped`, that of its
 * children that exited too (a Postgres backend that ends during a run moves its time to the postmaster's).
 */
function processCpu(pid: number, reaped = false): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0)) * TICK_US;
  } catch {
    return 0;
  }
}

/** CPU in µs of every process whose command name is `comm`, and of their exited children (Postgres: the postmaster and its backends). */
function cpuOf(comm: string): number {
  let sum = 0;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === comm) sum += processCpu(Number(entry), true);
    } catch {
      // gone between the listing and the read
    }
  }
  return sum;
}

export const cpuMeasured = os.platform() === 'linux' && fs.existsSync('/proc/self/stat');

/**
 * The CPU so far of `pid`, of Postgres and of Redis (µs): with `redisPid`, that Redis server alone (and its
 * reaped children: saves and rewrites), else every Redis server on the host (other tenants' test servers too).
 */
export function sampleCpu(pid: number | undefined, redisPid?: number | null): CpuSample | null {
  if (!cpuMeasured || pid === undefined) return null;
  return { process: processCpu(pid), postgres: cpuOf('postgres'), redis: redisPid ? processCpu(redisPid, true) : cpuOf('redis-server') };
}

/** The pid of the Redis server behind `info` (its INFO server section), when it runs on this host as `redis-server`; else null. */
export function redisServerPid(info: string): number | null {
  const pid = Number(/^process_id:(\d+)/m.exec(info)?.[1] ?? NaN);
  if (!cpuMeasured || !Number.isInteger(pid)) return null;
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'redis-server' ? pid : null;
  } catch {
    return null; // another host, or another pid namespace (a container)
  }
}

/** CPU per request (µs) between two samples. */
export function cpuPerRequest(before: CpuSample | null, after: CpuSample | null, requests: number): CpuSample | null {
  if (!before || !after || requests <= 0) return null;
  const per = (k: keyof CpuSample) => Math.round((after[k] - before[k]) / requests);
  return { process: per('process'), postgres: per('postgres'), redis: per('redis') };
}

/** A process's resident memory now and at its peak (VmRSS, VmHWM), in MB; null where /proc is not there. */
export function residentMb(pid: number | undefined): { now: number; peak: number } | null {
  if (!cpuMeasured || pid === undefined) return null;
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { now: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) };
  } catch {
    return null;
  }
}
