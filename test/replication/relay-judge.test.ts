/**
 * The confirm round's judgement of rows by their ack records (src/replication/relay-judge.ts judgeRows), on
 * replies shaped as ioredis gives HGETALL's (plain objects).
 */
import { AckSigning, signAck } from '../../src/replication/ack-auth';
import { formatAck } from '../../src/replication/ack-records';
import { judgeRows, type UnconfirmedRow } from '../../src/replication/relay-judge';
import { testEventAuth } from '../support/env';

const auth = testEventAuth();
const ID = '01a20904-0000-7000-8000-0000000000f1';
const row: UnconfirmedRow = { id: 1n, change_id: ID, org_id: null, deliveries: {} };
const applied = formatAck({ outcome: 'applied' }, '2026-12-06T02:00:00.000Z');

test.each(['off', 'sign', 'require'] as const)(
  '%s: a destination named as something every object inherits (a member planted as toString) reads as no ack and no delivery, and the rest is judged',
  (mode) => {
    const reply = { 'us-iowa': signAck(auth, ID, 'us-iowa', applied), 'europe-belgium': signAck(auth, ID, 'europe-belgium', applied) };
    const j = judgeRows([row], [[null, reply]], ['europe-belgium', 'toString', 'constructor'], 'us-iowa', new AckSigning(auth, mode));
    expect(j.acked).toEqual([{ changeId: ID, region: 'europe-belgium', ack: reply['europe-belgium'], unverified: false }]);
    expect([j.confirmed, j.ownAck, [...j.missing]]).toEqual([[], [], [ID]]);
  },
);
