/** The http URL of a host and port: an IPv6 address goes in brackets (`http://[::1]:8080`), as a URL needs. */
export function httpUrl(host: string, port: number | string): string {
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}

/** Where a client on this machine reaches a server listening on `host`: a wildcard address accepts on loopback. */
export function localHost(host: string): string {
  return host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
}
