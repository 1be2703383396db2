/**
 * changeStatus (src/replication/change-status.ts) without Redis or Postgres: a change parked in every region
 * that has not applied it is pending, never complete; and the origin names a region whose delivery ack it
 * kept as parked when its tracker record is gone (the Redis lost it, or it expired). Signed values (written by
 * a later version, ack-auth.ts) read as the unsigned ones.
 */
import { changeStatus, type ChangeStatusDeps } from '../../src/replication/change-status';
import { ORG_FIELD, PARKED_PREFIX } from '../../src/replication/ack-records';
import { signAck } from '../../src/replication/ack-auth';
import { EventAuth, parseReplicationKeys } from '../../src/replication/event-auth';

const ID = '01a2a000-0000-7000-8000-0000000000c5';
const AT = '2026-01-01T00:00:00.000Z';
const parked = `${PARKED_PREFIX}${AT}`;

function deps(hash: Record<string, string>, outbox: object | null, deliveries: { region: string; ack: string | null }[]): ChangeStatusDeps {
  return {
    region: 'a',
    regions: ['a', 'b', 'c'],
    tracker: { status: async () => hash } as never,
    db: {
      replicationOutbox: { findUnique: async () => outbox },
      replicationDelivery: { findMany: async () => deliveries },
    } as never,
  };
}

test('a change parked in the only region that lacks it is pending there, not complete', async () => {
  const s = await changeStatus(deps({ a: AT, b: AT, c: parked }, null, []), ID, null);
  expect(s).toMatchObject({ state: 'pending', complete: false, pending_regions: ['c'], parked_regions: ['c'] });
});

test('the origin reads a parked delivery ack it kept when the tracker record is gone', async () => {
  const outbox = { createdAt: new Date(AT), publishedAt: new Date(AT), confirmedAt: null, orgId: null };
  const s = await changeStatus(deps({}, outbox, [{ region: 'b', ack: AT }, { region: 'c', ack: parked }]), ID, null);
  expect(s).toMatchObject({ state: 'pending', complete: false, pending_regions: ['c'], parked_regions: ['c'] });
  expect(s?.applied_at).toEqual({ a: AT, b: AT, c: null });
});

test('signed ack values read as the unsigned ones: clean times, parked still parked, the organization still names the owner', async () => {
  const auth = new EventAuth(parseReplicationKeys(`k1:${'a'.repeat(32)}`));
  const org = '01a20904-0000-7000-8000-00000000000f';
  const hash = {
    a: signAck(auth, ID, 'a', `applied@${AT}`),
    b: signAck(auth, ID, 'b', `applied@${AT}`),
    c: signAck(auth, ID, 'c', parked),
    [ORG_FIELD]: signAck(auth, ID, ORG_FIELD, org),
  };
  const s = await changeStatus(deps(hash, null, []), ID, org);
  expect(s).toMatchObject({ state: 'pending', complete: false, pending_regions: ['c'], parked_regions: ['c'] });
  expect(s?.applied_at).toEqual({ a: AT, b: AT, c: null });
  // The origin's kept copies of the acks (Postgres), signed as its relay read them.
  const outbox = { createdAt: new Date(AT), publishedAt: new Date(AT), confirmedAt: null, orgId: null };
  const kept = await changeStatus(deps({}, outbox, [{ region: 'b', ack: hash.b }, { region: 'c', ack: hash.c }]), ID, null);
  expect(kept).toMatchObject({ pending_regions: ['c'], parked_regions: ['c'], applied_at: { a: AT, b: AT, c: null } });
});
