/**
 * The key that signs SSO session tokens: ES256 (ECDSA P-256), derived from TOKEN_SIGNING_SECRET, so every
 * region signs with the same key without a key to distribute, and published as a JWK Set
 * (`GET /sso/saml/jwks.json`). An application checks a sign-in with the public key alone: it needs no secret
 * of the service, so it cannot make tokens of any kind (with an HMAC key shared with the Infisical access
 * tokens, whoever checked a sign-in could have minted access tokens to any organization's configuration).
 */
import crypto from 'node:crypto';

/** The order of P-256: a private scalar is in [1, N). */
const P256_ORDER = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

export interface PublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  alg: 'ES256';
  use: 'sig';
}

export interface SsoTokenKey {
  privateKey: crypto.KeyObject;
  kid: string;
  jwk: PublicJwk;
}

const derived = new Map<string, SsoTokenKey>();

/** The signing key of `secret` (HKDF-SHA256 to a P-256 scalar; the RFC 7638 thumbprint as `kid`). */
export function ssoTokenKey(secret: string): SsoTokenKey {
  const known = derived.get(secret);
  if (known) return known;
  for (let attempt = 0; ; attempt++) {
    const d = Buffer.from(crypto.hkdfSync('sha256', secret, 'saml-credential-service', `sso-token-es256:${attempt}`, 32));
    const scalar = BigInt(`0x${d.toString('hex')}`);
    if (scalar === 0n || scalar >= P256_ORDER) continue; // about one secret in 2^32 takes a second try
    const ecdh = crypto.createECDH('prime256v1');
    ecdh.setPrivateKey(d);
    const point = ecdh.getPublicKey(); // 0x04 || x || y
    const x = point.subarray(1, 33).toString('base64url');
    const y = point.subarray(33).toString('base64url');
    const privateKey = crypto.createPrivateKey({ key: { kty: 'EC', crv: 'P-256', x, y, d: d.toString('base64url') }, format: 'jwk' });
    // RFC 7638: the SHA-256 of the required members, in lexical order, without whitespace.
    const kid = crypto.createHash('sha256').update(JSON.stringify({ crv: 'P-256', kty: 'EC', x, y })).digest('base64url');
    const key: SsoTokenKey = { privateKey, kid, jwk: { kty: 'EC', crv: 'P-256', x, y, kid, alg: 'ES256', use: 'sig' } };
    derived.set(secret, key);
    return key;
  }
}
