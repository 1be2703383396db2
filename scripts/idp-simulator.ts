/**
 * `npm run idp:simulator`: a SAML IdP for trying single sign-on by hand, on 127.0.0.1:9401 (PORT, HOST).
 * It serves its metadata at /metadata.xml (signing certificate: the test key test/fixtures/sso/idp-a) and
 * answers every AuthnRequest sent to /sso (HTTP-Redirect) by signing in USER_EMAIL (default
 * alice@example.com) at once: a signed Response to the request's ACS URL, as the HTML form a browser would
 * post, or as JSON ({acs, SAMLResponse, RelayState}) for `Accept: application/json`. Test keys: never trust it.
 */
import http from 'node:http';
import { b64, idpMetadata, requestFromRedirect, signedResponse, signer } from '../test/sso/support/idp-simulator';
import { answerHelp } from './usage';

const ENTITY_ID = 'https://idp-simulator.invalid/saml';
const USAGE = 'usage: [PORT=9401] [HOST=127.0.0.1] [USER_EMAIL=alice@example.com] npm run idp:simulator (a SAML IdP that signs in USER_EMAIL at once, with test keys, until Ctrl-C)';

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}

async function main(): Promise<void> {
  answerHelp(process.argv.slice(2), USAGE);
  const host = process.env.HOST || '127.0.0.1';
  const port = Number(process.env.PORT || 9401);
  const email = process.env.USER_EMAIL || 'alice@example.com';
  const key = signer('idp-a');
  const metadata = idpMetadata({ entityId: ENTITY_ID, ssoUrl: `http://${host}:${port}/sso`, certs: [key] });

  const server = http.createServer((req, res) => {
    // A request target the URL parser refuses (`//x:abc`, a port that is not a number) is a 400; its
    // TypeError ended the process.
    let url: URL;
    try {
      url = new URL(req.url ?? '/', `http://${host}:${port}`);
    } catch {
      return void res.writeHead(400).end('not a URL path\n');
    }
    if (url.pathname === '/metadata.xml') return void res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' }).end(metadata);
    if (url.pathname !== '/sso' || !url.searchParams.has('SAMLRequest')) return void res.writeHead(404).end('not found\n');
    let request;
    try {
      request = requestFromRedirect(url.toString());
    } catch {
      return void res.writeHead(400).end('SAMLRequest is not a deflated, base64 AuthnRequest\n');
    }
    const xml = signedResponse(
      { issuer: ENTITY_ID, audience: request.issuer, acs: request.acs, inResponseTo: request.id, nameId: email, attributes: { email: [email], name: [email.split('@')[0] ?? email] } },
      key,
    );
    const answer = { acs: request.acs, SAMLResponse: b64(xml), RelayState: request.relayState };
    process.stdout.write(`signed in ${email} for ${request.issuer} (request ${request.id})\n`);
    if ((req.headers.accept ?? '').includes('application/json')) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    const relay = answer.RelayState === null ? '' : `<input type="hidden" name="RelayState" value="${escape(answer.RelayState)}">`;
    res.writeHead(200, { 'content-type': 'text/html' }).end(
      `<!DOCTYPE html><html><body onload="document.forms[0].submit()"><form method="post" action="${escape(answer.acs)}">` +
        `<input type="hidden" name="SAMLResponse" value="${answer.SAMLResponse}">${relay}<button>Continue</button></form></body></html>`,
    );
  });
  server.once('error', (err: NodeJS.ErrnoException) => {
    process.stderr.write(`cannot listen on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'the port is in use; set PORT' : err.message}\n`);
    process.exit(2);
  });
  server.listen(port, host, () => {
    process.stdout.write(`IdP simulator: metadata at http://${host}:${port}/metadata.xml, signs in ${email}\nserving on http://${host}:${port} (Ctrl-C stops it)\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

void main();
