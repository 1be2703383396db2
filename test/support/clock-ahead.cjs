/**
 * Preloaded into a region process (`NODE_OPTIONS=--require …/clock-ahead.cjs`, `CLOCK_AHEAD_MS=N`): its
 * clock reads N ms ahead of the machine's (Date.now and new Date()), as a host whose clock drifted would. The
 * service has no clock of its own to inject, and faketime is not available.
 */
const ahead = Number(process.env.CLOCK_AHEAD_MS || 0);
const RealDate = Date;
const now = () => RealDate.now() + ahead;
class AheadDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(now());
    else super(...args);
  }
  static now() {
    return now();
  }
}
globalThis.Date = AheadDate;
