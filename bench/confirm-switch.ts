/**
 * A preload for the throughput part's `no-confirm` arm (bench/arms.ts), not a setting of the service: with
 * `REGION_NODE_ARGS="--require dist/bench/confirm-switch.js"` and `BENCH_CONFIRM_OFF=<file>`, a region's relay
 * skips its confirm rounds (DeliveryConfirmer.confirm: the page of unconfirmed rows, their ack records, the
 * judgement, the inbox lookups) while that file exists. The bench creates and removes the file between
 * blocks of one run, so the rounds are priced against the same processes on the same minutes of the host.
 */
import fs from 'node:fs';
import { DeliveryConfirmer } from '../src/replication/relay-confirm';

const flag = process.env.BENCH_CONFIRM_OFF;
if (flag) {
  const confirm = DeliveryConfirmer.prototype.confirm;
  DeliveryConfirmer.prototype.confirm = function confirmUnlessSwitchedOff(this: DeliveryConfirmer): Promise<void> {
    return fs.existsSync(flag) ? Promise.resolve() : confirm.call(this);
  };
}
