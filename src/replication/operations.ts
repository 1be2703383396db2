import { Uuid } from '../http/validate';
import { OPERATOR_PORT_NOTE } from '../observability/operations';
import type { Operation } from '../openapi/operation';
import { ChangeStatusSchema, DigestResult, ParkedDiscardBody, ParkedDiscardedEvent, ParkedDiscardResult, ParkedRetryResult, ReplicationStatus } from './schema';

const tags = ['Replication (admin)'];

/** The OpenAPI operations of admin-routes.ts. */
export const replicationOperations: Operation[] = [
  {
    method: 'get', path: '/admin/replication', tags, auth: 'admin', dialect: 'slashid',
    summary: "This region's replication status: applied per origin, consumer groups, stream, outbox, failures",
    description: OPERATOR_PORT_NOTE,
    responses: { 200: { description: 'The status.', schema: ReplicationStatus } },
    errors: [400, 401],
  },
  {
    method: 'post', path: '/admin/replication/parked/retry', tags, auth: 'admin', dialect: 'slashid',
    summary: 'Apply parked change events again (after an upgrade)',
    responses: { 200: { description: 'How many applied and how many stay parked.', schema: ParkedRetryResult } },
    errors: [400, 401, { status: 409, description: 'This process runs no applier.' }],
  },
  {
    method: 'post', path: '/admin/replication/parked/discard', tags, auth: 'admin', dialect: 'slashid',
    summary: 'Give up on parked change events in this region (they will never apply here)',
    description: 'For a parked change that no upgrade or retry will apply. The change is not applied in this region: its rows keep '
      + 'what they hold here (a discarded delete or create leaves the region apart from the others until the rows are written '
      + 'again). It no longer holds the tombstone horizon or the adoption of a removed region\'s credentials. Each discarded '
      + 'event is kept in this region (GET /admin/replication/parked/discarded/{changeId}); a copy of it delivered again is '
      + 'not parked again.',
    body: { schema: ParkedDiscardBody },
    responses: { 200: { description: 'What was discarded, and the named ids that were not parked here.', schema: ParkedDiscardResult } },
    errors: [400, 401],
  },
  {
    method: 'get', path: '/admin/replication/parked/discarded/{changeId}', tags, auth: 'admin', dialect: 'slashid',
    summary: 'A change event this region discarded, whole',
    pathParams: { changeId: Uuid() },
    responses: { 200: { description: 'The discarded change and its event.', schema: ParkedDiscardedEvent } },
    errors: [400, 401, 404],
  },
  {
    method: 'get', path: '/admin/replication/changes/{changeId}', tags, auth: 'admin', dialect: 'slashid',
    summary: "One change's progress across regions",
    pathParams: { changeId: Uuid() },
    responses: { 200: { description: 'Per region: applied, superseded or pending.', schema: ChangeStatusSchema } },
    errors: [400, 401, 404],
  },
  {
    method: 'get', path: '/admin/replication/digest', tags, auth: 'admin', dialect: 'slashid',
    summary: 'Per replicated table: row count and digest (equal in every region once caught up)',
    responses: { 200: { description: 'The digests.', schema: DigestResult } },
    errors: [400, 401],
  },
];
