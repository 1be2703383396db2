/**
 * The fetch's time budget, and the translation of the many ways a fetch can fail (undici, net,
 * tls, the budget running out) into MetadataErrors that tell the admin which limit or which
 * network condition was hit.
 */
import { excerpt, MetadataError } from './errors';

/** One budget for the whole fetch: DNS, every redirect hop and the body. */
export class Deadline {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;

  /** `ended`: the caller's signal, which ends it early too (the request it fetches for was answered). */
  constructor(readonly ms: number, ended?: AbortSignal) {
    this.timer = setTimeout(() => this.controller.abort(), ms);
    if (ended?.aborted) this.controller.abort();
    else ended?.addEventListener('abort', () => this.controller.abort(), { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get expired(): boolean {
    return this.controller.signal.aborted;
  }

  /** Settles with `work`, or rejects as soon as the deadline passes (work is not cancelled). */
  race<T>(work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(new Error('deadline passed'));
      if (this.expired) {
        onAbort();
        return;
      }
      this.signal.addEventListener('abort', onAbort, { once: true });
      work.then(
        (value) => {
          this.signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (err: unknown) => {
          this.signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  error(url: URL): MetadataError {
    return new MetadataError(
      'timeout',
      `Timed out fetching ${url.href}: no complete answer within ${this.ms} ms. Check that the IdP is up and the URL is right.`,
    );
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  let current: unknown = err;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    if ('code' in current && typeof current.code === 'string') codes.push(current.code);
    current = 'cause' in current ? current.cause : null;
  }
  return codes;
}

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|HOSTNAME_MISMATCH)/;
const CLOSED_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'ERR_STREAM_PREMATURE_CLOSE']);
const UNREACHABLE_CODES = new Set(['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL']);

/** `limits` is the one field the message needs, so this module does not import fetch-metadata (which imports it). */
export function describeFailure(err: unknown, url: URL, limits: { connectTimeoutMs: number }, deadline: Deadline): MetadataError {
  if (err instanceof MetadataError) return err;
  if (deadline.expired) return deadline.error(url);
  const codes = errorCodes(err);
  const host = url.host;
  const has = (test: (code: string) => boolean): boolean => codes.some(test);
  if (has((c) => c === 'UND_ERR_CONNECT_TIMEOUT')) {
    return new MetadataError('timeout', `Timed out connecting to ${host}: no connection within ${limits.connectTimeoutMs} ms.`);
  }
  if (has((c) => c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'UND_ERR_BODY_TIMEOUT')) return deadline.error(url);
  if (has((c) => c === 'ECONNREFUSED')) {
    return new MetadataError('unreachable', `Could not reach ${host}: the connection was refused. Check the host and port.`);
  }
  if (has((c) => TLS_CODE.test(c))) {
    const why = excerpt(err instanceof Error ? err.message : (codes[0] ?? ''), 150);
    return new MetadataError(
      'tls_error',
      `Could not establish a trusted https connection to ${host}: ${why}. The IdP needs a valid certificate for this host name.`,
    );
  }
  if (has((c) => CLOSED_CODES.has(c))) {
    return new MetadataError('unreachable', `The connection to ${host} closed before the metadata was received.`);
  }
  if (has((c) => UNREACHABLE_CODES.has(c))) {
    return new MetadataError('unreachable', `Could not reach ${host}: no route to the host.`);
  }
  const detail = excerpt(codes[0] ?? (err instanceof Error ? err.message : 'unknown error'), 150);
  return new MetadataError('unreachable', `Could not fetch ${url.href} (${detail}).`);
}
