import fs from 'node:fs';
import path from 'node:path';
import { Type } from '@sinclair/typebox';
import { Router } from 'express';
import type { Feature } from '../feature';
import { observabilityOperations } from '../observability/operations';
import { PROJECT_ROOT } from '../paths';
import { replicationOperations } from '../replication/operations';
import { buildOpenApiDocument } from './document';
import type { Operation } from './operation';

export const OPENAPI_PATH = '/openapi.json';

/** What /openapi.json answers, as far as its own document describes it (declared as a string before: a fuzzing review's finding). */
const OpenApiDocument = Type.Object(
  { openapi: Type.Literal('3.1.0'), info: Type.Object({ title: Type.String(), version: Type.String() }), paths: Type.Record(Type.String(), Type.Object({})) },
  { description: 'An OpenAPI 3.1 document.' },
);

const ownOperation: Operation = {
  method: 'get', path: OPENAPI_PATH, tags: ['Operations'], auth: 'none', dialect: 'slashid',
  summary: 'This document (OpenAPI 3.1)',
  responses: { 200: { description: 'The OpenAPI document of every operation this region serves.', schema: OpenApiDocument } },
};

function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Every operation of the service: the app's own routes, replication's admin routes, and each feature's `operations`. */
export function allOperations(features: readonly Feature[]): Operation[] {
  return [...observabilityOperations, ...replicationOperations, ...features.flatMap((f) => f.operations ?? [])];
}

export function openApiDocument(features: readonly Feature[]) {
  return buildOpenApiDocument(allOperations(features), { version: version() });
}

/** Serves GET /openapi.json (no token: it holds no data) describing `features` and itself. */
export function openApiFeature(features: readonly Feature[]): Feature {
  const self: Feature = {
    name: 'openapi',
    tables: [],
    operations: [ownOperation],
    pages: () => {
      // Built once per region, on first request: the operations are fixed for the life of the process, and
      // building it costs start-up time a restarting region should spend on getting ready.
      let document: string | null = null;
      const router = Router();
      router.get(OPENAPI_PATH, (_req, res) => {
        document ??= JSON.stringify(openApiDocument([...features, self]));
        res.type('application/json').send(document);
      });
      return router;
    },
  };
  return self;
}
