/**
 * Idempotent POSTs. A request that carries an Idempotency-Key is looked up in the local database before
 * any work; a retry of a request that succeeded gets the stored answer again. Otherwise the write runs,
 * and inside its transaction the key's row is locked first (so concurrent requests with one key in one
 * region queue up and all but the first replay) and then stored with the answer, in the same replicated
 * change as the resource.
 *
 * Two regions that take the same new key at the same instant cannot see each other's row; that needs
 * cross-region coordination this service does not do (see README).
 */
import type { Response } from 'express';
import type { Db } from '../db/client';
import { AppError } from '../http/errors';
import { awaitChange, type Consistency, type FollowUp, type StoredResult } from '../replication/consistency';
import type { Replicator, WriteContext } from '../replication/replicator';
import { IDEMPOTENCY_HEADER, idempotencyRowId, REPLAYED_HEADER, requestHash } from './request';
import { findStoredKey, idempotencyKeysTable, storedFromRow, type StoredKey } from './store';

/** How long a key is honoured. Expired keys are ignored, so the same key then starts a new request. */
export const KEY_LIFETIME_MS = 24 * 3600_000;

/** The success answer of a request, as the client got it (or would have, had it not timed out). */
export interface StoredResponse {
  status: number;
  body: unknown;
}

/** One POST with an Idempotency-Key, after authentication and body validation. */
export interface IdempotentCall<T> {
  /** The row key: a digest of organization, endpoint and key. */
  id: string;
  orgId: string;
  /** A stable name of the operation, e.g. 'slashid:provider-credentials:create'. */
  endpoint: string;
  key: string;
  requestHash: string;
  /** The answer for the write's value; stored with the key so that a retry gets the same answer. */
  respond(value: T): StoredResponse;
}

/**
 * What an earlier request with the same key decides for this one. A replay names the change that stored
 * the answer, so a replay under all_regions can wait on it as the first request did.
 */
export type Prior =
  | { kind: 'replay'; response: StoredResponse; changeId: string | null; storedAt: Date; origin: string | null }
  | { kind: 'reused'; message: string };

/** The result of a write that may have been answered by an earlier request instead. */
export type Outcome<T> = { kind: 'done'; value: T } | Prior;

export function idempotentCall<T>(
  key: string | null,
  scope: { orgId: string; endpoint: string; body: unknown },
  respond: (value: T) => StoredResponse,
): IdempotentCall<T> | null {
  if (key === null) return null;
  return {
    id: idempotencyRowId(scope.orgId, scope.endpoint, key),
    orgId: scope.orgId,
    endpoint: scope.endpoint,
    key,
    requestHash: requestHash(scope.body),
    respond,
  };
}

function decide(stored: StoredKey | null, call: IdempotentCall<unknown>, now: Date): Prior | null {
  if (!stored || stored.deleted || stored.expiresAt.getTime() <= now.getTime()) return null;
  if (stored.requestHash === call.requestHash && stored.orgId === call.orgId && stored.endpoint === call.endpoint) {
    return {
      kind: 'replay',
      response: { status: stored.responseStatus, body: stored.responseBody },
      changeId: stored.changeId,
      storedAt: new Date(stored.expiresAt.getTime() - KEY_LIFETIME_MS),
      origin: stored.originRegion,
    };
  }
  return {
    kind: 'reused',
    message:
      `${IDEMPOTENCY_HEADER} '${call.key}' was already used with a different request body for this endpoint ` +
      `within the last ${KEY_LIFETIME_MS / 3600_000} h. Resend the original body to get the original answer, ` +
      'or use a new key for a new request.',
  };
}

/** The earlier request's decision from this region's database, before any work is done. */
export async function findPrior(db: Db, call: IdempotentCall<unknown> | null, now = new Date()): Promise<Prior | null> {
  if (!call) return null;
  return decide(await findStoredKey(db, call.id), call, now);
}

/**
 * The earlier request's decision once no write with the key is under way in this region: waits for the
 * key's lock (a first request still committing holds it, as does an apply of its change) and reads the key
 * again. For a request whose own work failed before its write: a retry racing the first request answers
 * what that one became, not the failure of work the first one already did (its IdP fetch, say).
 */
export async function settledPrior(repl: Replicator, call: IdempotentCall<unknown> | null): Promise<Prior | null> {
  if (!call) return null;
  const { value } = await repl.write(async (w) => decide(await lockStored(w, call.id), call, new Date()));
  return value;
}

/**
 * Runs `write` inside a replicated write unless a request with the same key committed first, and stores
 * the key with the answer in the same transaction. The key is locked before the write touches anything,
 * so every write of a feature takes its locks in the same order.
 */
export async function runOnce<T>(w: WriteContext, call: IdempotentCall<T> | null, write: () => Promise<T>): Promise<Outcome<T>> {
  if (!call) return { kind: 'done', value: await write() };
  const prior = decide(await lockStored(w, call.id), call, new Date());
  if (prior) return prior;
  const value = await write();
  const response = call.respond(value);
  // The key row goes last in the change: an ack that names it as the row that lost says the resource's rows
  // held (ReplicatedTable.recordsWrite); the change status reads a create that lost only its key from that.
  const created = new Date();
  await w.put(idempotencyKeysTable, {
    id: call.id,
    org_id: call.orgId,
    endpoint: call.endpoint,
    idempotency_key: call.key,
    request_hash: call.requestHash,
    response_status: response.status,
    response_body: response.body,
    change_id: w.changeId,
    created_at: created.toISOString(),
    expires_at: new Date(created.getTime() + KEY_LIFETIME_MS).toISOString(),
  });
  return { kind: 'done', value };
}

async function lockStored(w: WriteContext, id: string): Promise<StoredKey | null> {
  const row = await w.lock(idempotencyKeysTable, id);
  return row ? storedFromRow(row) : null;
}

/** The written value, for the `result` of a 408; a replay has nothing new to report. */
export function doneValue<T>(o: Outcome<T>): T | undefined {
  return o.kind === 'done' ? o.value : undefined;
}

/**
 * Marks the answer to `res` as a replay, with the X-Change-Id of the change that stored it (a client whose
 * first answer was lost learns it here, to follow the change up; none for a key stored before change ids
 * were recorded). Set before a replay waits on its change, so that its 408 or 409 carries them too.
 */
function markReplay(res: Response, changeId: string | null): void {
  res.setHeader(REPLAYED_HEADER, 'true');
  if (changeId) res.setHeader('X-Change-Id', changeId);
}

/**
 * A replay under all_regions waits on the change that stored it (awaitChange), its answer marked as a replay
 * whatever it is (markReplay): the stored answer after it, or the wait's 408 or 409.
 */
export async function awaitReplay(
  res: Response,
  repl: Replicator,
  c: Consistency,
  prior: Extract<Prior, { kind: 'replay' }>,
  followUp: FollowUp,
  storedResult: StoredResult,
): Promise<void> {
  markReplay(res, prior.changeId);
  await awaitChange(repl, c, prior, followUp, storedResult);
}

/** The stored answer again, marked as a replay (markReplay). */
export function sendReplay(res: Response, response: StoredResponse, changeId: string | null = null): void {
  markReplay(res, changeId);
  res.status(response.status).json(response.body);
}

/** A key reused with another body, as an AppError for dialects that render 422 from one. */
export function keyReused(message: string): AppError {
  return new AppError(422, 'idempotency_key_reused', message);
}
