/**
 * The request and response classes a Node HTTP server should construct for an Express app, so that
 * Express does not change each request's prototype.
 *
 * Express's app.handle runs `Object.setPrototypeOf(req, app.request)` (and the same for res) on every
 * request. V8 does not cache that transition for these objects: each request and each response ends up
 * with a hidden class (map) of its own. Measured in a heap snapshot of a region holding 10,000 requests:
 * 63,640 maps and descriptor arrays, 23 MB, two unique maps per request; and every property access on a
 * request or response in Node's HTTP code, the router and the handlers meets a map it has never seen.
 * When the server constructs `req` and `res` from classes whose prototypes *are* app.request and
 * app.response, the setPrototypeOf finds the prototype already set, which V8 skips, and requests share
 * their maps. The app works as before under any other server (supertest's, for one).
 */
import http from 'node:http';
import type { Express } from 'express';

/** Makes `app.request` / `app.response` the prototypes of two subclasses of Node's, and returns those. */
export function serverClasses(app: Express): http.ServerOptions {
  class Request extends http.IncomingMessage {}
  class Response<R extends http.IncomingMessage = http.IncomingMessage> extends http.ServerResponse<R> {}
  adoptPrototype(app, 'request', Request.prototype);
  adoptPrototype(app, 'response', Response.prototype);
  return { IncomingMessage: Request, ServerResponse: Response };
}

/**
 * `app[key]` is Object.create(express's request or response) with an own `app` property: `proto` takes its
 * place, with the same prototype and the same own properties (and its class's constructor).
 */
function adoptPrototype(app: Express, key: 'request' | 'response', proto: object): void {
  const current = app[key] as object;
  Object.setPrototypeOf(proto, Object.getPrototypeOf(current));
  Object.defineProperties(proto, Object.getOwnPropertyDescriptors(current));
  (app as unknown as Record<string, unknown>)[key] = proto;
}
