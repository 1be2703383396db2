/**
 * A configuration or usage mistake (exit 2, as a region's and the operator commands'). A module of its own so
 * that what only tells such mistakes apart (scripts/usage.ts) loads no config schema with it.
 */
export class ConfigError extends Error {}
