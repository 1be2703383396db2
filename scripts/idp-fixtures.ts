/**
 * `npm run idp:fixtures`: serves the IdP metadata fixtures (test/fixtures/idp-metadata) on 127.0.0.1:9400
 * (PORT and HOST override it) in the foreground until Ctrl-C, so the README walkthrough has an IdP to point
 * at. The default regions.config.json allow-lists 127.0.0.1:9400 for plain-http metadata fetches.
 * It is the tests' fixture server (test/support/idp-server.ts) on a fixed port.
 */
import fs from 'node:fs';
import { FIXTURES_DIR, startIdpServer } from '../test/support/idp-server';
import { answerHelp } from './usage';

const USAGE = 'usage: [PORT=9400] [HOST=127.0.0.1] npm run idp:fixtures (serves the IdP metadata fixtures of test/fixtures/idp-metadata until Ctrl-C)';

async function main(): Promise<void> {
  answerHelp(process.argv.slice(2), USAGE);
  const host = process.env.HOST || '127.0.0.1';
  const port = Number(process.env.PORT || 9400);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    process.stderr.write(`PORT must be a port number (1-65535), got '${process.env.PORT}'\n`);
    process.exit(2);
  }
  let server;
  try {
    server = await startIdpServer(host, port);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the port is already in use (another idp:fixtures?); set PORT to use another' : (err as Error).message;
    process.stderr.write(`cannot listen on ${host}:${port}: ${why}\n`);
    process.exit(2);
  }
  const files = fs.readdirSync(FIXTURES_DIR).filter((f) => f.endsWith('.xml')).sort();
  process.stdout.write(`IdP metadata fixtures from ${FIXTURES_DIR}:\n${files.map((f) => `  ${server.url(f)}`).join('\n')}\n`);
  process.stdout.write(`serving on http://${server.hostPort} (Ctrl-C stops it)\n`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

void main();
