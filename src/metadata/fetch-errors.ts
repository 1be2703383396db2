/**
 * The fetch's time budget, and the translation of the many ways a fetch can fail (undici, net,
 * tls, the budget running out) into MetadataErrors that tell the admin which limit or which
 * network condition was hit.
 */
import http from 'node:http';
import { formatBytes } from '../format-bytes';
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

function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  let current: unknown = err;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    if ('code' in current && typeof current.code === 'string') codes.push(current.code);
    current = 'cause' in current ? current.cause : null;
  }
  return codes;
}

/**
 * What a TLS failure says, without OpenSSL's decoration: its errors read
 * "<thread id>:error:<code>:SSL routines:<function>:<reason>:<source file>:<line>:", and the thread id and
 * the source path are not the caller's business. The reason alone, from the error (or a cause) that has one.
 */
function tlsReason(err: unknown): string | null {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    if ('code' in current && typeof current.code === 'string' && TLS_CODE.test(current.code)) {
      if (current.code === 'ERR_TLS_CERT_ALTNAME_INVALID') return wrongHostReason(current);
      if ('reason' in current && typeof current.reason === 'string' && current.reason !== '') return current.reason;
      // Not `instanceof Error`: an error of Node's core can come from another realm (a vm context, jest).
      const message = 'message' in current && typeof current.message === 'string' ? current.message : '';
      return message !== '' && !/:error:[0-9A-F]+:/i.test(message) ? message : current.code;
    }
    current = 'cause' in current ? current.cause : null;
  }
  return null;
}

/**
 * A certificate for another name, in our words: Node's reason reads "IP: 1.2.3.4 is not in the cert's list: "
 * (an empty list shown as nothing) or "Host: a.example. is not cert's CN: b.example". The names the
 * certificate is for come from its subject alternative names, else its common name.
 */
function wrongHostReason(err: object): string {
  const host = 'host' in err && typeof err.host === 'string' ? err.host : null;
  const cert = 'cert' in err && typeof err.cert === 'object' && err.cert !== null ? (err.cert as { subjectaltname?: unknown; subject?: { CN?: unknown } }) : null;
  const alt = typeof cert?.subjectaltname === 'string' ? cert.subjectaltname.split(',').map((n) => n.trim().replace(/^(DNS|IP Address):/, '')).filter(Boolean) : [];
  const cn = typeof cert?.subject?.CN === 'string' ? [cert.subject.CN] : [];
  const names = alt.length > 0 ? alt : cn;
  const shown = names.slice(0, 5).join(', ') + (names.length > 5 ? `, and ${names.length - 5} more` : '');
  const which = host ? `the host name ${host}` : 'this host name';
  return names.length > 0 ? `its certificate is not for ${which} but for ${shown}` : `its certificate names no host, so not ${which}`;
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
    const why = excerpt(tlsReason(err) ?? 'TLS error', 150);
    // OpenSSL's own failures (ERR_SSL_*) are about the protocol, not the certificate: most often an
    // https URL whose port speaks plain http.
    const hint = has((c) => c === 'ERR_SSL_WRONG_VERSION_NUMBER' || c === 'ERR_SSL_PACKET_LENGTH_TOO_LONG')
      ? 'The host did not answer with TLS on this port: is the URL http, or the port another service\'s?'
      : has((c) => c.startsWith('ERR_SSL_'))
        ? 'The IdP\'s TLS set-up could not be agreed on.'
        : 'The IdP needs a valid certificate for this host name.';
    return new MetadataError('tls_error', `Could not establish a trusted https connection to ${host}: ${why}. ${hint}`);
  }
  if (has((c) => CLOSED_CODES.has(c))) {
    return new MetadataError('unreachable', `The connection to ${host} closed before the metadata was received.`);
  }
  if (has((c) => UNREACHABLE_CODES.has(c))) {
    return new MetadataError('unreachable', `Could not reach ${host}: no route to the host.`);
  }
  // The HTTP client's own wording is not shown (a helper's review: it quoted undici's parser): our words
  // for what the IdP's server got wrong, an operating-system error code, or nothing more.
  if (has((c) => c === 'UND_ERR_HEADERS_OVERFLOW')) {
    return new MetadataError('unreachable', `The answer of ${host} has more header data than a fetch reads (${formatBytes(http.maxHeaderSize)}).`);
  }
  if (has((c) => c.startsWith('HPE_') || c === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') || namedInChain(err, 'HTTPParserError')) {
    return new MetadataError(
      'unreachable',
      `The answer of ${host} is not valid HTTP/1.1 (a malformed status line or header, or a body whose length does not match its Content-Length).`,
    );
  }
  const errno = codes.find((c) => /^E[A-Z0-9]{2,20}$/.test(c));
  return new MetadataError('unreachable', `Could not fetch ${url.href}: the connection failed${errno ? ` (${errno})` : ''}.`);
}

/** Whether the error, or one of its causes, is of the class named `name` (undici's parser errors carry no code). */
function namedInChain(err: unknown, name: string): boolean {
  let current: unknown = err;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    if ((current as { name?: unknown }).name === name || (current as object).constructor?.name === name) return true;
    current = 'cause' in current ? current.cause : null;
  }
  return false;
}
