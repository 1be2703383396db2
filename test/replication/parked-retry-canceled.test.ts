/**
 * A retry of a parked change whose apply the database cancels (its statement_timeout under a lock or load)
 * while nothing else committed says nothing about the change: it stays parked with the reason and message it
 * had (a change parked for clock skew keeps its every-minute retry), not relabeled apply-failed with a
 * message saying its apply alone ran past the timeout while other changes applied (ApplyTimeouts.canceledOwn).
 * Against the rig's database, a trigger raising query_canceled on the change's organization.
 */
import { FailureLog } from '../../src/replication/parked';
import { orgEvent, startApplierRig, type ApplierRig } from '../support/applier-rig';

let rig: ApplierRig;
beforeAll(async () => {
  rig = await startApplierRig('parked-retry-canceled');
  await rig.db.$executeRawUnsafe(`CREATE FUNCTION retry_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.name LIKE 'canceled%' THEN RAISE EXCEPTION 'canceling statement due to statement timeout' USING ERRCODE = 'query_canceled'; END IF;
      RETURN NEW;
    END $$`);
  await rig.db.$executeRawUnsafe('CREATE TRIGGER retry_cancel BEFORE INSERT OR UPDATE ON organizations FOR EACH ROW EXECUTE FUNCTION retry_cancel()');
}, 60_000);
afterAll(async () => {
  await rig?.cleanup();
});

const parkedRow = async (changeId: string) =>
  (await rig.db.$queryRawUnsafe<{ reason: string; last_error: string }[]>('SELECT reason, last_error FROM replication_failures WHERE change_id = $1::uuid AND parked_at IS NOT NULL', changeId))[0];

test('a parked change whose retry the database cancels, nothing else committing, keeps its reason and message', async () => {
  // Parked for clock skew; its clock agrees now, so the retry applies it, and the database cancels that.
  const skewed = orgEvent('canceled on its retry');
  await new FailureLog(rig.db).park([{ event: skewed, streamId: '1-0', reason: 'clock-skew', error: 'ahead of this region by 90 s' }]);
  const applier = await rig.applier({ consumer: 'retry-canceled' });
  try {
    expect(await applier.retryParked({ reason: 'clock-skew' })).toEqual({ applied: 0, parked: 1 });
    expect(await parkedRow(skewed.changeId)).toEqual({ reason: 'clock-skew', last_error: 'ahead of this region by 90 s' });
  } finally {
    await applier.stop();
  }
}, 60_000);

test('one canceled again after other changes committed since its previous cancellation is its own: apply-failed, saying so', async () => {
  await rig.db.$executeRawUnsafe('DELETE FROM replication_failures');
  const log = new FailureLog(rig.db);
  const slow = orgEvent('canceled on each retry');
  await log.park([{ event: slow, streamId: '1-0', reason: 'clock-skew', error: 'ahead' }]);
  const applier = await rig.applier({ consumer: 'retry-canceled-own' });
  try {
    // Canceled with nothing committed since: kept as it was.
    expect(await applier.retryParked({ reason: 'clock-skew' })).toEqual({ applied: 0, parked: 1 });
    expect(await parkedRow(slow.changeId)).toEqual({ reason: 'clock-skew', last_error: 'ahead' });
    // Another parked change applies (a commit of this applier) on the next retry, after the slow one's turn.
    const good = orgEvent('applies on its retry');
    await log.park([{ event: good, streamId: '2-0', reason: 'clock-skew', error: 'ahead' }]);
    expect(await applier.retryParked({ reason: 'clock-skew' })).toEqual({ applied: 1, parked: 1 });
    // Canceled again, with a commit since its previous cancellation: its own.
    expect(await applier.retryParked({ reason: 'clock-skew' })).toEqual({ applied: 0, parked: 1 });
    expect(await parkedRow(slow.changeId)).toEqual({ reason: 'apply-failed', last_error: expect.stringMatching(/statement timeout.*ran past the database's statement_timeout while other changes applied/) });
  } finally {
    await applier.stop();
  }
}, 60_000);
