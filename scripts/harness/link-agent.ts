/**
 * The link agent of one host: runs inside the host's network namespace (`ip netns exec <ns> node
 * link-agent.js '<json>'`) and forwards the host's address:port to the service on 127.0.0.1 with the
 * host's delays (see delay-proxy.ts). The harness changes the delays by writing a JSON DelayTable line to
 * its stdin; when stdin closes (the harness is gone, however it died) the agent exits.
 */
import readline from 'node:readline';
import { DelayProxy, type DelayTable } from './delay-proxy';

export interface AgentConfig {
  listenHost: string;
  forwards: { listenPort: number; targetPort: number }[];
  delays: DelayTable;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '') as AgentConfig;
  let delays = config.delays;
  const proxies = config.forwards.map(
    (f) => new DelayProxy({ listenHost: config.listenHost, listenPort: f.listenPort, targetHost: '127.0.0.1', targetPort: f.targetPort, delays: () => delays }),
  );
  await Promise.all(proxies.map((p) => p.listen()));
  process.stdout.write('ready\n');
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    try {
      delays = JSON.parse(line) as DelayTable;
    } catch {
      process.stderr.write(`link agent: ignoring bad delay line: ${line}\n`);
    }
  });
  rl.on('close', () => process.exit(0));
}

main().catch((err: Error) => {
  process.stderr.write(`link agent failed: ${err.message}\n`);
  process.exit(1);
});
