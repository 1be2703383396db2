/**
 * The README and docs/ link to each other's sections by anchor (docs/operations.md#parked-events, …), and a
 * section moved or renamed breaks such a link silently: GitHub just opens the page at its top. Every relative
 * link of README.md and docs/*.md must name a file that exists and, with an anchor, a heading of that file
 * (GitHub's slug: lower case, punctuation dropped, spaces to hyphens, a repeated heading gets -1, -2, …).
 */
import fs from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';

/** The headings of a Markdown file outside code blocks, as GitHub's anchors. */
export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutCode(markdown)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const text = heading.replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1');
    const slug = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
}

/** The lines of a Markdown file that are not inside a fenced code block. */
function withoutCode(markdown: string): string[] {
  let fenced = false;
  return markdown.split('\n').filter((line) => {
    if (/^\s*```/.test(line)) fenced = !fenced;
    else if (!fenced) return true;
    return false;
  });
}

/** Relative link targets (`file#anchor`, `#anchor`) of a Markdown file, outside code blocks and code spans. */
export function relativeLinks(markdown: string): string[] {
  const text = withoutCode(markdown).join('\n').replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] ?? '').filter((t) => !/^[a-z][a-z+.-]*:/i.test(t));
}

const FILES = ['README.md', ...fs.readdirSync(path.join(PROJECT_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

describe('links between the README and docs/', () => {
  it('computes the anchors GitHub gives headings', () => {
    const anchors = anchorsOf("# Replication model\n## What a 408 means, and how to follow up\n```sh\n# not a heading\n```\n" +
      "## Idempotent retries (`Idempotency-Key`)\n## Restoring a region's database from a backup\n## Logs\n## Logs\n");
    expect([...anchors]).toEqual(['replication-model', 'what-a-408-means-and-how-to-follow-up', 'idempotent-retries-idempotency-key',
      'restoring-a-regions-database-from-a-backup', 'logs', 'logs-1']);
  });

  it.each(FILES)('every relative link of %s names an existing file and heading', (file) => {
    const markdown = fs.readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
    const broken = relativeLinks(markdown).filter((link) => {
      const [target = '', anchor] = link.split('#');
      const resolved = target === '' ? path.join(PROJECT_ROOT, file) : path.join(PROJECT_ROOT, path.dirname(file), target);
      if (!fs.existsSync(resolved)) return true;
      return anchor !== undefined && !anchorsOf(fs.readFileSync(resolved, 'utf8')).has(anchor);
    });
    expect(broken).toEqual([]);
  });
});
