/**
 * Jest setup (every test file): every answer of this service that a test receives through fetch (the
 * harness's `call`, direct fetch calls, in-process regions calling their peers) is checked against the
 * OpenAPI document; a mismatch fails the test that received it. The service is told apart from other
 * servers in the tests (IdP fixtures, simulators) by the X-Request-Id every answer of it carries.
 */
import { Agent } from 'undici';
import { checkAgainstDocument } from './openapi-check';

const failures: string[] = [];
const pending = new Set<Promise<void>>();
const original = globalThis.fetch;

function describeRequest(input: Parameters<typeof fetch>[0], init?: RequestInit): { method: string; path: string } {
  const url = input instanceof Request ? input.url : String(input);
  const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
  return { method, path: new URL(url).pathname };
}

async function inspect(req: { method: string; path: string }, res: Response): Promise<void> {
  const body = req.method === 'HEAD' ? '' : await res.text();
  const failure = checkAgainstDocument({ ...req, status: res.status, contentType: res.headers.get('content-type') ?? '', body });
  if (failure) failures.push(failure);
}

/**
 * The service closes a keep-alive connection after 5 s idle and says so (`Keep-Alive: timeout=5`); fetch's
 * own agent keeps it for 4 s, so a client timer running more than a second late (a loaded CI machine: two
 * jest workers, a dozen region processes) could reuse a connection the region was closing. A POST without an
 * Idempotency-Key cannot be sent again (below), and CI failed on one ("other side closed"). The tests' agent
 * lets a connection go after 1 s idle: the timer must now be 4 s late to lose the race.
 */
const agent = new Agent({ keepAliveTimeout: 1000, keepAliveMaxTimeout: 1000 });
/** fetch's init with the tests' agent (jest's sandbox has a global dispatcher of its own, which fetch does not read). */
const withAgent = (init?: RequestInit): RequestInit => ({ dispatcher: agent, ...init }) as RequestInit;

/**
 * A keep-alive connection the server closed at the moment the client reused it fails with "other side
 * closed" before any answer; on a loaded machine the client's idle timer can run late and lose that race.
 * Like browsers, an idempotent request (GET, HEAD) is sent once more on a fresh connection then, and so is
 * one with an Idempotency-Key (the service answers its repetition as the first); nothing else is retried,
 * since the server may have acted on it.
 */
function closedBeforeAnswer(err: unknown): boolean {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code === 'ECONNRESET' || (cause?.code === 'UND_ERR_SOCKET' && /other side closed/.test(cause.message ?? ''));
}

async function send(input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> {
  try {
    return await original(input, withAgent(init));
  } catch (err) {
    const { method } = describeRequest(input, init);
    const keyed = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined)).has('idempotency-key');
    if ((method !== 'GET' && method !== 'HEAD' && !keyed) || !closedBeforeAnswer(err)) throw err;
    // On a connection of its own: after a flood the agent may hold several connections the server is closing,
    // and a retry through it met the next one (overload.test failed so once).
    const fresh = new Agent({ keepAliveTimeout: 1000, keepAliveMaxTimeout: 1000 });
    try {
      return await original(input, { ...init, dispatcher: fresh } as unknown as RequestInit);
    } finally {
      void fresh.close();
    }
  }
}

globalThis.fetch = async (input, init) => {
  const res = await send(input, init);
  if (res.headers.has('x-request-id')) {
    if (res.headers.get('x-content-type-options') !== 'nosniff') {
      const { method, path } = describeRequest(input, init);
      failures.push(`${method} ${path} → ${res.status}: no "X-Content-Type-Options: nosniff"`);
    }
    const p = inspect(describeRequest(input, init), res.clone()).catch((err: Error) => {
      failures.push(`checking an answer failed: ${err.message}`);
    });
    pending.add(p);
    void p.finally(() => pending.delete(p));
  }
  return res;
};

/** The mismatches found so far (and forgets them): for the test of this check itself. */
export async function takeFailures(): Promise<string[]> {
  await Promise.all([...pending]);
  return failures.splice(0);
}

async function assertNoFailures(): Promise<void> {
  const found = await takeFailures();
  if (found.length === 0) return;
  throw new Error(`${found.length} answer(s) do not match the OpenAPI document (src/openapi, GET /openapi.json):\n${found.join('\n')}`);
}

afterEach(assertNoFailures);
afterAll(assertNoFailures);
