/**
 * The tests' fetch lets an idle keep-alive connection go long before a region closes it (test/support/
 * openapi-setup.ts). A region closes one after 5 s idle; fetch's own agent kept it 4 s, so on a loaded
 * machine a POST could be written onto a connection the region was closing ("other side closed", which CI
 * once failed on). Now a connection idle for more than a second is not reused.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const SERVER = `
const http = require('node:http');
let connections = 0;
const server = http.createServer((req, res) => { req.resume(); req.on('end', () => res.end(String(connections))); });
server.on('connection', () => connections++);
server.keepAliveTimeout = 5000; // as a region's
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

describe("the tests' fetch", () => {
  let child: ChildProcess;
  let url = '';
  beforeAll(async () => {
    child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    url = await new Promise<string>((resolve) => child.stdout!.once('data', (d) => resolve(`http://127.0.0.1:${String(d).trim()}/`)));
  });
  afterAll(() => child?.kill('SIGKILL'));

  const connectionsSeen = async () => Number(await (await fetch(url, { method: 'POST', body: 'x' })).text());

  test('reuses a connection at once, and lets one idle for more than a second go', async () => {
    const first = await connectionsSeen();
    await new Promise((r) => setTimeout(r, 50)); // the connection back in the pool
    expect(await connectionsSeen()).toBe(first);
    await new Promise((r) => setTimeout(r, 1600));
    expect(await connectionsSeen()).toBe(first + 1);
  });
});
