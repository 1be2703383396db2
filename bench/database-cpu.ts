/**
 * CPU time of the Postgres backends of one database over a window (Linux, from /proc): the bench's figure for
 * a side's own Postgres work, which other work on a shared host does not pollute (bench/cpu.ts's Postgres
 * figure is every backend of the server). The backends are those pg_stat_activity lists with that database
 * (client connections, autovacuum workers on its tables; not the WAL writer, checkpointer or background
 * writer, which belong to no database). They are listed when the window opens, at each poll and when it
 * closes; each counts from its CPU when first seen (from 0 when it started inside the window) to its CPU
 * when last seen. A backend that ends inside the window is counted up to the last poll before its end: what
 * it spent after that is lost (its time moves to the postmaster, which every database shares), so the bench
 * polls every half second and reports how many ended.
 */
import fs from 'node:fs';
import type pg from 'pg';

const TICK_US = 1e6 / 100; // USER_HZ, as in cpu.ts

/** A process's CPU (user + system, µs) and start time (clock ticks since boot), or null when it is gone. */
function backendStat(pid: number): { cpu: number; started: number } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { cpu: (Number(f[11]) + Number(f[12])) * TICK_US, started: Number(f[19]) };
  } catch {
    return null;
  }
}

/** Clock ticks since boot now, to tell a backend that started inside the window. */
function ticksNow(): number {
  return Math.floor(Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 100);
}

/** The pids of the backends connected to `database` (pg_stat_activity), as seen by `pool`'s connection. */
export async function backendPids(pool: pg.Pool, database: string): Promise<number[]> {
  const { rows } = await pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database]);
  return rows.map((r) => r.pid);
}

interface Backend {
  pid: number;
  first: number;
  last: number;
  ended: boolean;
}

/** What one window of a database's backends spent. */
export interface DatabaseCpuSpent {
  /** µs of CPU of its backends over the window. */
  cpu: number;
  /** Backends seen in the window. */
  backends: number;
  /** Of those, the ones that ended inside it (counted up to the last poll before their end). */
  ended: number;
}

export class DatabaseCpu {
  /** Keyed by pid and start time: a pid the kernel reuses is another backend. */
  private readonly seen = new Map<string, Backend>();
  private readonly opened = ticksNow();

  private constructor(
    private readonly pool: pg.Pool,
    private readonly database: string,
  ) {}

  /** Opens a window on `database`'s backends; `pool` is a connection to another database (its own backend is not counted). */
  static async open(pool: pg.Pool, database: string): Promise<DatabaseCpu> {
    const w = new DatabaseCpu(pool, database);
    await w.poll(true);
    return w;
  }

  /** Lists the database's backends again and reads the CPU of every one seen so far. */
  async poll(opening = false): Promise<void> {
    const listed = await backendPids(this.pool, this.database);
    for (const pid of listed) {
      const s = backendStat(pid);
      if (!s) continue;
      const key = `${pid} ${s.started}`;
      if (this.seen.has(key)) continue;
      // Started inside the window: all of its CPU is the window's. Seen first later but older than the window
      // (missed by the listing): counted from now, as nothing tells what it had spent when the window opened.
      const first = !opening && s.started >= this.opened ? 0 : s.cpu;
      this.seen.set(key, { pid, first, last: s.cpu, ended: false });
    }
    for (const [key, b] of this.seen) {
      if (b.ended) continue;
      const s = backendStat(b.pid);
      if (!s || `${b.pid} ${s.started}` !== key) b.ended = true;
      else b.last = s.cpu;
    }
  }

  /** Closes the window: a last poll, then what the backends spent. */
  async close(): Promise<DatabaseCpuSpent> {
    await this.poll();
    let cpu = 0;
    let ended = 0;
    for (const b of this.seen.values()) {
      cpu += b.last - b.first;
      if (b.ended) ended++;
    }
    return { cpu, backends: this.seen.size, ended };
  }
}
