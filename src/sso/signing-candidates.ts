/**
 * A cheap first look at a posted response's signatures (validateResponse, response.ts): which of the IdP's
 * certificates verify them, before node-saml's full check, and which algorithms are refused.
 */
import { xmlCrypto } from '../on-first-use';
import { attr, childElements, DS_NS } from '../metadata/xml-dom';
import { transformsProblem } from '../metadata/xml-signature';
import { quote, refused } from './refusal';
import type { PostedResponse } from './response';

/** Signature and digest algorithms accepted (SHA-1 is not: collisions are practical). */
const SIGNATURE_ALGORITHMS = new Set([
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512',
  'http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1',
]);
const DIGEST_ALGORITHMS = new Set(['http://www.w3.org/2001/04/xmlenc#sha256', 'http://www.w3.org/2001/04/xmlenc#sha512']);

/**
 * The IdP certificates worth handing to node-saml, which checks every certificate it is given in full: for
 * each, it parses the whole document again and digests the signed element before it looks at the signature
 * value, so 20 certificates cost 20 times the largest document. Here each signature node-saml would check
 * (the Response's, the Assertion's) has its SignedInfo canonicalized once, by xml-crypto as node-saml's check
 * does, and its value verified against each certificate (a public-key operation on a few hundred bytes):
 * only certificates that verify one are passed on, and they are what node-saml would accept anyway. Null
 * when the response is signed and no certificate verifies any of its signatures (validateResponse refuses it
 * without node-saml). A weak signature or digest algorithm is refused.
 */
export function signingCandidates(posted: PostedResponse, pems: readonly string[]): string[] | null {
  const onResponse = childElements(posted.response, DS_NS, 'Signature');
  const onAssertion = posted.assertion ? childElements(posted.assertion, DS_NS, 'Signature') : [];
  // node-saml refuses an element with more than one signature, before any work per certificate.
  if (onResponse.length > 1 || onAssertion.length > 1) return null;
  const signatures = [...onResponse, ...onAssertion];
  if (signatures.length === 0 || pems.length === 0) return [...pems];
  const verified = new Set<string>();
  for (const signature of signatures) {
    const signedInfo = childElements(signature, DS_NS, 'SignedInfo')[0];
    const algorithms = signedInfo ? [...childElements(signedInfo, DS_NS, 'SignatureMethod'), ...childElements(signedInfo, DS_NS, 'Reference').flatMap((r) => childElements(r, DS_NS, 'DigestMethod'))] : [];
    for (const m of algorithms) {
      const algorithm = attr(m, 'Algorithm') ?? '';
      if (!(m.localName === 'SignatureMethod' ? SIGNATURE_ALGORITHMS : DIGEST_ALGORITHMS).has(algorithm)) {
        throw refused(401, `the SAML response is signed with ${quote(algorithm.replace(/^.*#/, ''), 60) || 'no algorithm'}, which is not accepted (SHA-1 and weaker are refused); set the IdP application's signature and digest algorithms to SHA-256.`);
      }
    }
    const sig = new (xmlCrypto().SignedXml)();
    try {
      sig.loadSignature(signature);
    } catch {
      continue; // An unreadable signature: node-saml refuses it.
    }
    // node-saml's check runs every transform over the signed element before the signature value.
    const transforms = transformsProblem(sig);
    if (transforms !== null) throw refused(401, `the SAML response's signature is not accepted: ${transforms}.`);
    try {
      // xml-crypto's own steps of checkSignature (not in its typings), so the canonical form is the one it checks.
      const internals = sig as unknown as { signatureValue: unknown; getCanonSignedInfoXml(doc: unknown): string; findSignatureAlgorithm(name: unknown): { verifySignature(data: string, key: string, value: unknown): boolean } };
      const canon = internals.getCanonSignedInfoXml(signature.ownerDocument);
      const algorithm = internals.findSignatureAlgorithm(sig.signatureAlgorithm);
      // The first certificate that verifies it is the one: another with the same key (a renewal) would only
      // repeat node-saml's whole check.
      for (const pem of pems) {
        try {
          if (algorithm.verifySignature(canon, pem, internals.signatureValue)) {
            verified.add(pem);
            break;
          }
        } catch {
          // not this certificate
        }
      }
    } catch {
      // An unreadable signature: node-saml refuses it.
    }
  }
  return verified.size ? pems.filter((p) => verified.has(p)) : null;
}
