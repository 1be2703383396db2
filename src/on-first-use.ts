/**
 * Packages loaded the first time a request needs them, not when the region starts: undici (metadata
 * fetches), node-saml and jsonwebtoken (SSO and Infisical sign-ins), xmldom and xml-crypto (IdP metadata and
 * SAML responses). They are ~0.2 s of a region's ~1.6 s of CPU to start, and many regions serve no such
 * request for a long time (one that only applies replicated changes parses no XML). The first request that
 * needs one pays its load once per process (~40–160 ms of CPU a package, with the event loop held meanwhile;
 * README, "A region's start"). Modules import only types from these packages; test/on-first-use.test.ts
 * checks that a started region has not loaded them.
 *
 * Each package's path is resolved here, as the region's modules load (a few milliseconds for the five): an
 * installation without one fails at start, as it did when they were imported, instead of starting, reporting
 * ready and answering 500 to the first sign-in or metadata fetch.
 */
function onFirstUse<T>(id: string): () => T {
  require.resolve(id);
  let loaded: T | undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return () => (loaded ??= require(id) as T);
}

export const undici = onFirstUse<typeof import('undici')>('undici');
export const jsonwebtoken = onFirstUse<typeof import('jsonwebtoken')>('jsonwebtoken');
export const nodeSaml = onFirstUse<typeof import('@node-saml/node-saml')>('@node-saml/node-saml');
export const xmldom = onFirstUse<typeof import('@xmldom/xmldom')>('@xmldom/xmldom');
export const xmlCrypto = onFirstUse<typeof import('xml-crypto')>('xml-crypto');
