/**
 * The fault harness runs its regions with `ackSignatures: require` unless `--ack-signatures` says otherwise,
 * so CI's short fault schedule exercises signed acks under kills, partitions and Redis outages.
 */
import { ackSignaturesFlag, parseFlags, UsageError } from '../../scripts/harness/common';

const flags = (...argv: string[]) => parseFlags(argv, ['ack-signatures']).flags;

test('the harness requires signed acks by default, and --ack-signatures chooses off, sign or require', () => {
  expect(ackSignaturesFlag(flags())).toBe('require');
  for (const mode of ['off', 'sign', 'require']) expect(ackSignaturesFlag(flags('--ack-signatures', mode))).toBe(mode);
});

test('--ack-signatures refuses another value as a usage error', () => {
  expect(() => ackSignaturesFlag(flags('--ack-signatures=on'))).toThrow(new UsageError("--ack-signatures must be off, sign or require, got 'on'"));
});
