/**
 * Verification of an enveloped XML signature on a metadata document's root element.
 *
 * The signature is checked with the certificate in its own KeyInfo, which proves only that whoever holds
 * that certificate's key produced the document: anyone can sign with a throwaway key. So the signer
 * certificate is returned, and the signature counts for trust only when the caller finds it among the
 * certificates trusted for the credential (src/provider-credentials/trust.ts). The signer certificate's
 * validity dates are deliberately not judged
 * (Entra keeps signing with an expired certificate). To rule out signature wrapping, the signature
 * must cover exactly the root element, and the caller reads the metadata from the XML that was
 * actually digested rather than from the original parse.
 */
import type { Element } from '@xmldom/xmldom';
import type { SignedXml } from 'xml-crypto';
import { xmlCrypto } from '../on-first-use';
import { excerpt, MetadataError } from './errors';
import { childElements, descendantElements, DS_NS, attr } from './xml-dom';
import { readCertificate, type CertificateInfo } from './x509';

function badSignature(why: string): MetadataError {
  return new MetadataError(
    'bad_signature',
    `The metadata carries an XML signature that does not verify: ${why}. ` +
      'Download a fresh, unmodified copy from the IdP.',
  );
}

function signerCertificate(signature: Element): { info: CertificateInfo; weak: string | null } {
  const keyInfo = childElements(signature, DS_NS, 'KeyInfo')[0];
  const certEl = keyInfo ? descendantElements(keyInfo, DS_NS, 'X509Certificate')[0] : undefined;
  if (certEl === undefined) throw badSignature('the signature has no X509Certificate in its KeyInfo');
  try {
    // A weak key is read (the signature is checked as any other) and then counts for nothing (below).
    return readCertificate(certEl.textContent ?? '');
  } catch (err) {
    const why = err instanceof Error ? err.message : 'unreadable';
    throw badSignature(`the certificate in the signature's KeyInfo cannot be read (${why})`);
  }
}

/** xml-crypto's messages are written for developers; say the same thing for an admin. */
function explainLibraryError(full: string): string {
  // The library's message may echo the document (an algorithm URI, an ID); judge and quote only a bounded excerpt.
  const message = excerpt(full, 300);
  if (/signature value .* is incorrect/.test(message)) return 'the signature value does not match the signed content';
  if (/multiple elements with the same value for the ID/.test(message)) {
    return 'several elements carry the signed ID, which is how signature-wrapping attacks work';
  }
  if (/algorithm .* is not supported|not supported/i.test(message)) return `it uses an unsupported algorithm (${excerpt(message, 150)})`;
  return excerpt(message, 200).replace(/\.+$/, '');
}

/** The transforms a signature's reference may list: what SAML and metadata signers use. */
const TRANSFORMS = new Set([
  'http://www.w3.org/2000/09/xmldsig#enveloped-signature',
  'http://www.w3.org/2001/10/xml-exc-c14n#',
  'http://www.w3.org/2001/10/xml-exc-c14n#WithComments',
  'http://www.w3.org/TR/2001/REC-xml-c14n-20010315',
  'http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments',
]);
const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';

/**
 * What is wrong with the transforms of a loaded signature's references, or null. xml-crypto runs each
 * transform over the whole signed element (a canonicalization serialises and parses it again) before it
 * looks at the signature value, and takes any number: 300 of them over 800 KB held a parse worker for 14 s,
 * with a signature of any key (a metadata signature is checked with the certificate it carries itself).
 * Signers list an enveloped-signature transform and one canonicalization; xml-crypto adds a canonicalization
 * after an enveloped-signature transform that ends the list.
 */
export function transformsProblem(sig: SignedXml): string | null {
  for (const ref of sig.getReferences()) {
    const transforms = ref.transforms ?? [];
    const unknown = transforms.find((t) => !TRANSFORMS.has(t));
    if (unknown !== undefined) return `its reference uses a transform that is not accepted (${excerpt(unknown, 100)})`;
    if (transforms.length > 3 || transforms.filter((t) => t === ENVELOPED).length > 1) {
      return `its reference lists ${transforms.length} transforms, where signers use an enveloped-signature transform and one canonicalization`;
    }
  }
  return null;
}

function coversRoot(uri: string, root: Element): boolean {
  // "" is the whole document: only the document's root element may be signed that way.
  if (uri === '') return root.ownerDocument?.documentElement === root;
  const id = attr(root, 'ID');
  return id !== null && id !== '' && uri === `#${id}`;
}

function failureReason(sig: SignedXml): string {
  const failed = sig.getReferences().find((ref) => ref.validationError !== undefined);
  if (failed === undefined) return 'the signature value does not match';
  if (/digest/i.test(failed.validationError?.message ?? '')) {
    return 'the signed content was changed after signing (digest mismatch)';
  }
  return 'the signed element could not be found';
}

/**
 * Returns null when the root carries no signature, else the canonical XML of the root element
 * that the signature covers and the certificate it verified with (the one in its KeyInfo; whether
 * that certificate is trusted is the caller's question). Throws `bad_signature` when the signature
 * does not verify.
 */
export function verifyRootSignature(text: string, root: Element): { xml: string; signer: CertificateInfo | null } | null {
  const signatures = childElements(root, DS_NS, 'Signature');
  if (signatures.length === 0) return null;
  if (signatures.length > 1) throw badSignature('the root element carries more than one signature');
  const signature = signatures[0];

  const { info: signer, weak } = signerCertificate(signature);
  const sig = new (xmlCrypto().SignedXml)({ publicCert: signer.pem });
  let valid: boolean;
  try {
    sig.loadSignature(signature);
    const refs = sig.getReferences();
    if (refs.length !== 1 || !coversRoot(refs[0].uri, root)) {
      throw badSignature('the signature does not cover the whole document (it must reference the root element)');
    }
    const transforms = transformsProblem(sig);
    if (transforms !== null) throw badSignature(transforms);
    valid = sig.checkSignature(text);
  } catch (err) {
    if (err instanceof MetadataError) throw err;
    const message = err instanceof Error ? err.message : '';
    throw badSignature(explainLibraryError(message));
  }
  if (!valid) throw badSignature(failureReason(sig));

  const signed = sig.getSignedReferences();
  if (signed.length !== 1) throw badSignature('the signature does not cover exactly one element');
  // Signed by a key too short to trust: read as signed by no one (as by a certificate nobody trusts).
  return { xml: signed[0], signer: weak === null ? signer : null };
}
