/** Reads Prometheus text exposition (as GET /metrics answers it) for assertions. */
import { adminHeaders, call } from '../support/harness';

export interface Scrape {
  text: string;
  /** The value of one sample: `name` with (at least) these labels; undefined when absent. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Every sample of `name`, with its labels. */
  samples(name: string): { labels: Record<string, string>; value: number }[];
}

export function parseMetrics(text: string): Scrape {
  const rows = text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(l);
      if (!m) throw new Error(`unparsable metrics line: ${l}`);
      const labels: Record<string, string> = {};
      for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) if (k) labels[k] = v ?? '';
      return { name: m[1] ?? '', labels, value: Number(m[3]) };
    });
  const samples = (name: string) => rows.filter((r) => r.name === name).map(({ labels, value }) => ({ labels, value }));
  return {
    text,
    samples,
    value: (name, want = {}) => samples(name).find((s) => Object.entries(want).every(([k, v]) => s.labels[k] === v))?.value,
  };
}

export async function scrape(baseUrl: string): Promise<Scrape> {
  const res = await call<string>(baseUrl, 'GET', '/metrics', { headers: adminHeaders });
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  return parseMetrics(res.body);
}
