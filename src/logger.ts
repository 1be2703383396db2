import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(opts: { level: string; region?: string }): Logger {
  return pino({ level: opts.level, base: opts.region ? { region: opts.region } : undefined });
}
