/**
 * parseVersion reads by hand what the regular expression /^(\d{15})\.(\d{6})\.(.+)$/ defines: the same
 * stamp for every version it matches, an error for every string it does not.
 */
import { formatVersion, parseVersion } from '../../src/replication/hlc';

const DEFINITION = /^(\d{15})\.(\d{6})\.(.+)$/;

function byDefinition(v: string) {
  const m = DEFINITION.exec(v);
  return m ? { wall: Number(m[1]), counter: Number(m[2]), region: m[3] } : null;
}

function parsed(v: string) {
  try {
    return parseVersion(v);
  } catch {
    return null;
  }
}

test('versions and near-versions parse as the regular expression says', () => {
  const good = formatVersion({ wall: 1796120408762, counter: 12, region: 'us-iowa' });
  const cases = [
    good, `${good}.x`, '001796120408762.000000.a', '001796120408762.000000.', '001796120408762.000000',
    '01796120408762.000000.us-iowa', '001796120408762.00000.us-iowa', '001796120408762-000000.us-iowa',
    '00179612040876x.000000.us-iowa', '001796120408762.00000x.us-iowa', '001796120408762.000000.us\niowa',
    '001796120408762.000000.us\u2028iowa', '001796120408762.000000.\r', ' 001796120408762.000000.us-iowa', '',
    '００１796120408762.000000.us-iowa', '999999999999999.999999.z',
  ];
  // And mutations of a good one (a fixed pseudo-random sequence): a character replaced, dropped or added.
  const alphabet = '0123456789.-az\n\u2028 ';
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < 2000; i++) {
    const at = Math.floor(random() * good.length);
    const c = alphabet[Math.floor(random() * alphabet.length)] as string;
    const op = i % 3;
    cases.push(op === 0 ? good.slice(0, at) + c + good.slice(at + 1) : op === 1 ? good.slice(0, at) + good.slice(at + 1) : good.slice(0, at) + c + good.slice(at));
  }
  for (const v of cases) expect([v, parsed(v)]).toEqual([v, byDefinition(v)]);
});
