import type { Request } from 'express';

/** The http URL of a host and port: an IPv6 address goes in brackets (`http://[::1]:8080`), as a URL needs. */
export function httpUrl(host: string, port: number | string): string {
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}

/** Where a client on this machine reaches a server listening on `host`: a wildcard address accepts on loopback. */
export function localHost(host: string): string {
  return host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
}

/**
 * The path a log line names for a request: the whole path as the client sent it (req.path is relative to
 * the router answering it), without the query, which can carry secrets or personal data, or a fragment.
 */
export function requestPath(req: Pick<Request, 'originalUrl'>): string {
  // A fragment (a raw client may send one; Express routes by the path before it) is no part of the path either.
  return req.originalUrl.split(/[?#]/, 1)[0] ?? '';
}

/**
 * Whether the URL's host is a DNS name or an IP address and nothing else. The URL parser keeps `;`, `,`, `'`
 * and `"` in a host, and a sign-on URL's origin goes into the login page's Content-Security-Policy header
 * (form-action), where `;` would start another directive.
 */
export function hasPlainHost(url: URL): boolean {
  return /^(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])$/i.test(url.hostname);
}
