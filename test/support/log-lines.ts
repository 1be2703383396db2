/** A log destination for a region under test that keeps every JSON line written to it, parsed. */
import { Writable } from 'node:stream';

export type LogLine = Record<string, unknown>;

export function logLines(): { lines: LogLine[]; sink: Writable } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as LogLine);
      done();
    },
  });
  return { lines, sink };
}
