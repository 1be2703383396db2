/**
 * The values of the regions file that code reads besides its schema (src/config-schema.ts). A module without
 * TypeBox: src/config.ts checks the file with a precompiled validator (src/config-validate.ts) and loads no schema.
 */

/** Config `ackSignatures`: its values (src/replication/ack-auth.ts says what each does). */
export const ACK_SIGNATURE_MODES = ['off', 'sign', 'require'] as const;
export type AckSignatures = (typeof ACK_SIGNATURE_MODES)[number];
/** `value` as a mode of `ackSignatures`, or undefined when it is none. */
export const ackSignatureMode = (value: unknown): AckSignatures | undefined => ACK_SIGNATURE_MODES.find((m) => m === value);

/** The file's redisKeyPrefix and REDIS_KEY_PREFIX alike: no glob characters (SCAN MATCH prefix*), no spaces. */
export const KEY_PREFIX_PATTERN = '^[A-Za-z0-9_.:-]{1,64}$';
