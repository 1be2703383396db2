/**
 * What identifies an idempotent request: the Idempotency-Key header, the scope it is unique in
 * (organization and endpoint), and a hash of the validated body that tells a retry from a different request.
 */
import crypto from 'node:crypto';
import type { Request } from 'express';
import { badRequest, shownHeader } from '../http/errors';
import { sentOnce } from '../http/header-count';

export const IDEMPOTENCY_HEADER = 'Idempotency-Key';
export const REPLAYED_HEADER = 'Idempotent-Replayed';

/** Visible ASCII only: a key is compared byte for byte, so nothing that proxies might fold or trim. */
const KEY = /^[\x21-\x7e]{1,255}$/;

/** The key of the request, null when the header is absent; a 400 when it is present but unusable. */
export function parseIdempotencyKey(req: Request): string | null {
  const raw = req.get(IDEMPOTENCY_HEADER);
  if (raw === undefined) return null;
  if (!KEY.test(raw)) {
    // Node joins a repeated header with ", ": two keys are not one malformed key.
    sentOnce(req, IDEMPOTENCY_HEADER, badRequest);
    throw badRequest(`${IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters, without spaces (got ${shownHeader(raw)}).`);
  }
  return raw;
}

/** JSON with object keys sorted at every level, so the same body always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function requestHash(body: unknown): string {
  return crypto.createHash('sha256').update(canonicalJson(body)).digest('hex');
}

/**
 * The row key. A digest, so a key is unique per organization and endpoint and every region derives the
 * same row for it; the separators keep ('a:b', 'c') and ('a', 'b:c') apart.
 */
export function idempotencyRowId(orgId: string, endpoint: string, key: string): string {
  return crypto.createHash('sha256').update(`${orgId}\n${endpoint}\n${key}`).digest('hex');
}
