/**
 * Which methods a path takes, from the operations the OpenAPI document declares: a request whose path is
 * the service's but whose method is not (`PUT` on a credential, `DELETE` on the list) is answered 405 with
 * `Allow`, which tells its sender the path is right, instead of a 404 that says it is not. Matched as
 * Express matches routes: any case, an optional trailing slash, a `{param}` one path segment.
 */
import type { Operation } from '../openapi/operation';

/** `(path) => methods` in upper case, `HEAD` with `GET` (Express answers it from the GET route); [] when no operation has the path. */
export function allowedMethodsOf(operations: readonly Pick<Operation, 'method' | 'path'>[]): (path: string) => string[] {
  const byTemplate = new Map<string, Set<string>>();
  for (const op of operations) {
    const methods = byTemplate.get(op.path) ?? new Set<string>();
    methods.add(op.method.toUpperCase());
    if (op.method === 'get') methods.add('HEAD');
    byTemplate.set(op.path, methods);
  }
  const templates = [...byTemplate].map(([template, methods]) => ({ pattern: templatePattern(template), methods }));
  return (path) => {
    const found = new Set<string>();
    for (const t of templates) if (t.pattern.test(path)) for (const m of t.methods) found.add(m);
    return [...found].sort();
  };
}

function templatePattern(template: string): RegExp {
  const parts = template.split(/\{[^}/]+\}/).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('[^/]+')}/?$`, 'i');
}
