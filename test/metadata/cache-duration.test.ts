import { cacheDurationMs } from '../../src/metadata/parse-metadata';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe('cacheDurationMs', () => {
  it.each([
    ['PT6H', 6 * HOUR],
    ['P1D', DAY],
    ['P0Y0M0DT6H0M0.000S', 6 * HOUR],
    ['PT30M', 30 * 60_000],
    ['PT1.5S', 1500],
    ['P1W', 7 * DAY],
    ['P1DT12H', 36 * HOUR],
    ['P1M', 30 * DAY],
    ['P1Y', 365 * DAY],
    [' PT6H ', 6 * HOUR],
  ])('reads %s', (iso, ms) => {
    expect(cacheDurationMs(iso)).toBe(ms);
  });

  it.each(['', 'P', 'PT', '6H', 'PT6', '-PT6H', 'P1H', 'PT1D', 'P1DT', 'P1.5.5D', 'soon'])('refuses %j', (iso) => {
    expect(cacheDurationMs(iso)).toBeNull();
  });
});
