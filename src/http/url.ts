/** The http URL of a host and port: an IPv6 address goes in brackets (`http://[::1]:8080`), as a URL needs. */
export function httpUrl(host: string, port: number | string): string {
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}
