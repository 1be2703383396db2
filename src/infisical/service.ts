import { v5 as uuidv5 } from 'uuid';
import type { InfisicalSamlConfig } from '../generated/prisma/client';
import { CONTROL_CHARACTER, INVISIBLE_CLASS } from '../control-characters';
import { badRequest, conflict, notFound } from '../http/errors';
import { hasPlainHost } from '../http/url';
import { hiddenInText, isBlankText } from '../http/validate';
import { runOnce, type IdempotentCall } from '../idempotency/service';
import { isMetadataError } from '../metadata/errors';
import { parseCertificate } from '../metadata/x509';
import type { Replicator } from '../replication/replicator';
import type { Row } from '../replication/tables';
import type { ValidationIssue } from './errors';
import { GROUP_SYNC_PROVIDERS, type CreateSsoConfigBody, type PatchSsoConfigBody, type SsoConfigDetails, type SsoConfigView } from './schema';
import { samlConfigsTable } from './store';

/**
 * Fixed namespace for config ids. The id is a function of the org id so that two regions creating the
 * same org's config at once write the same row: last-writer-wins then leaves one config, not two ids.
 */
const CONFIG_ID_NAMESPACE = '3f1c7a52-9b0e-4d8a-a6f4-2c5e8b71d903';

export function samlConfigId(orgId: string): string {
  return uuidv5(orgId, CONFIG_ID_NAMESPACE);
}

const INVISIBLE_CHAR = new RegExp(`[${INVISIBLE_CLASS}]`, 'u');
/** What entryPoint may not hold: controls, space, backslash, the invisible ones (the IDNA joiners U+200C and U+200D pass: Persian and Indic names use them). */
const NOT_IN_ENTRY_POINT = new RegExp(`(?![\\u200c\\u200d])[\\u0000-\\u0020\\u007f-\\u009f\\\\${INVISIBLE_CLASS}]`, 'u');
const ECHOED_ESCAPED = new RegExp(`(?! )[${INVISIBLE_CLASS}\\p{Cc}]`, 'gu');
const LINE_SEPARATOR = /[\p{Zl}\p{Zp}]/u;
const codePoint = (c: string) => `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;

/** A value echoed in a message: cut at 120 characters, its invisible and control characters named (<U+202E>) so the message does not carry them. */
const shown = (s: string) => (s.length > 120 ? `${s.slice(0, 120)}…` : s).replace(ECHOED_ESCAPED, (c) => `<${codePoint(c)}>`);

/** Why `entryPoint` cannot be used, or null. Browsers are sent there with the SAML request: https only. */
export function entryPointProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `entryPoint must be an absolute https URL such as https://idp.example.com/sso (got '${shown(value)}').`;
  }
  if (value !== value.trim()) return 'entryPoint must not start or end with whitespace.';
  if (url.protocol !== 'https:') {
    return `entryPoint must be an https URL; '${url.protocol.slice(0, -1)}' would send SAML requests unprotected or not at all (got '${shown(value)}').`;
  }
  // The value is stored and handed out as sent, not as the WHATWG parser above repaired it: what it lets
  // through (a line break, a space, a backslash for a slash, "https:host" without "//") is refused here, so
  // that every URL parser (and a Location header) reads the value as the one checked.
  // Also Unicode's spaces, line and paragraph separators and invisible format characters (U+2028, U+00A0,
  // U+200B, a right-to-left override): stored raw, they hide or break the URL where it is shown (a fuzzing review).
  const bad = NOT_IN_ENTRY_POINT.exec(value);
  if (bad) {
    const c = bad[0];
    const what = c === '\\' ? 'a backslash' : c === ' ' ? 'a space' : INVISIBLE_CHAR.test(c) ? `an invisible or space character (${codePoint(c)})` : `a control character (${codePoint(c)})`;
    // Echoed escaped (shown): the message must not carry the right-to-left override or line separator it refuses.
    return `entryPoint must not contain ${what}; percent-encode it (in a host name, use its xn-- form) (got '${shown(JSON.stringify(value).slice(1, -1))}').`;
  }
  const authority = /^https:\/\/([^/?#]+)/i.exec(value)?.[1];
  if (authority === undefined) return `entryPoint must be an absolute https URL such as https://idp.example.com/sso (got '${shown(value)}').`;
  if (url.username || url.password || authority.includes('@')) return 'entryPoint must not contain a user name or password.';
  // The URL parser keeps `"`, `'`, `;`, `,` and more in a host name, which no DNS name holds (a security review).
  if (!hasPlainHost(url)) return `entryPoint's host must be a DNS name or an IP address (letters, digits, '-', '_' and '.', or [IPv6]) (got '${shown(url.hostname)}').`;
  return null;
}

/**
 * Why `issuer` cannot be used, or null: the rule of free text (a SlashID label's, src/http/validate.ts), in the
 * words entryPoint's message uses. An entity ID never holds a control character, a line separator or an
 * invisible one: stored, it would never match the Issuer of the IdP's responses, and a line break or a
 * right-to-left override breaks or disguises the value wherever it is shown or logged. Not percent-encoded:
 * the value must equal the IdP's.
 */
export function issuerProblem(value: string): string | null {
  const bad = hiddenInText(value);
  if (bad !== undefined) {
    const what = CONTROL_CHARACTER.test(bad) ? 'a control character' : LINE_SEPARATOR.test(bad) ? 'a line or paragraph separator' : 'an invisible formatting character';
    return `issuer must not contain ${what} (${codePoint(bad)}); copy the IdP's entity ID as its metadata gives it (got '${shown(JSON.stringify(value).slice(1, -1))}').`;
  }
  return isBlankText(value) ? 'issuer must not be blank (white space or invisible characters only).' : null;
}

/** Why `cert` cannot be used, or null: it must parse as X.509 (PEM or bare base64 DER) and not be expired. */
export function certProblem(value: string, now = Date.now()): string | null {
  let notAfter: string;
  let subject: string;
  try {
    ({ notAfter, subject } = parseCertificate(value));
  } catch (err) {
    // Our own refusal says what is wrong; anything else is still the caller's certificate, not a fault here.
    return `cert is not a usable X.509 certificate${isMetadataError(err) ? `: ${err.message}` : '.'}`;
  }
  if (Date.parse(notAfter) <= now) {
    return `cert (${subject}) expired on ${notAfter}; upload the IdP's current signing certificate.`;
  }
  return null;
}

/**
 * The checks Infisical does not do, on the fields the schema did not already refuse, so one 422 lists
 * every problem of the body.
 */
export function settingIssues(body: unknown, alreadyRefused: readonly ValidationIssue[], now = Date.now()): ValidationIssue[] {
  if (typeof body !== 'object' || body === null) return [];
  const refused = new Set(alreadyRefused.map((i) => i.path[0]));
  const { entryPoint, issuer, cert } = body as Record<string, unknown>;
  const issues: ValidationIssue[] = [];
  if (typeof entryPoint === 'string' && !refused.has('entryPoint')) {
    const why = entryPointProblem(entryPoint);
    if (why) issues.push({ code: 'custom', path: ['entryPoint'], message: why });
  }
  if (typeof issuer === 'string' && !refused.has('issuer')) {
    const why = issuerProblem(issuer);
    if (why) issues.push({ code: 'custom', path: ['issuer'], message: why });
  }
  if (typeof cert === 'string' && !refused.has('cert')) {
    const why = certProblem(cert, now);
    if (why) issues.push({ code: 'custom', path: ['cert'], message: why });
  }
  return issues;
}

function iso(value: unknown): string {
  const d = value instanceof Date ? value : new Date(String(value));
  if (Number.isNaN(d.getTime())) throw new Error(`not a timestamp: ${String(value)}`);
  return d.toISOString();
}

export function viewFromRow(r: Row): SsoConfigView {
  return {
    id: String(r.id),
    orgId: String(r.org_id),
    isActive: r.is_active === true,
    lastUsed: r.last_used === null || r.last_used === undefined ? null : iso(r.last_used),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    authProvider: String(r.auth_provider),
  };
}

export function detailsFromModel(m: InfisicalSamlConfig): SsoConfigDetails {
  return {
    id: m.id,
    orgId: m.orgId,
    isActive: m.isActive,
    lastUsed: m.lastUsed ? m.lastUsed.toISOString() : null,
    createdAt: m.createdAt.toISOString(),
    updatedAt: m.updatedAt.toISOString(),
    authProvider: m.authProvider,
    organization: m.orgId,
    entryPoint: m.entryPoint,
    issuer: m.issuer,
    cert: m.cert,
    enableGroupSync: m.enableGroupSync === true,
  };
}

/**
 * The 404 of GET and PATCH. It says what else it may mean: a config created moments ago in another region
 * (with local_region) is not here yet, and a second create sent here meanwhile would lose to it once it
 * arrives, after its 200 (the earlier create is kept).
 */
export function noSamlConfig(orgId: string) {
  return notFound(
    `Organization ${orgId} has no SAML config in this region; create one with POST /api/v1/sso/config. If one was just created in another region, it has not replicated here yet: retry shortly rather than create another, which would lose to it (create with SlashID-Required-Consistency: all_regions to have it in every region at once).`,
  );
}

/** Infisical's 400 for group sync with a provider that has none. */
function groupSyncRefused(provider: string) {
  return badRequest(`Group sync is not supported for this SAML provider (${provider}); it is for ${GROUP_SYNC_PROVIDERS.join(', ')}.`);
}

/** The create's group-sync rule (a PATCH checks it against the stored config: patchSamlConfig). */
export function checkGroupSync(body: Pick<CreateSsoConfigBody, 'authProvider' | 'enableGroupSync'>): void {
  if (body.enableGroupSync === true && !GROUP_SYNC_PROVIDERS.includes(body.authProvider)) throw groupSyncRefused(body.authProvider);
}

/** With `idem`, a request that committed first with the same key answers instead (see runOnce). */
export function createSamlConfig(repl: Replicator, body: CreateSsoConfigBody, idem: IdempotentCall<SsoConfigView> | null = null) {
  const orgId = body.organizationId.toLowerCase();
  return repl.write((w) => runOnce(w, idem, async () => {
    // The lock covers the absent row too, so two creates in this region cannot both pass the check.
    const current = await w.lock(samlConfigsTable, orgId);
    if (current && !current.deleted_at) {
      throw conflict(`Organization ${orgId} already has a SAML config (id ${String(current.id)}); change it with PATCH /api/v1/sso/config.`);
    }
    const now = new Date().toISOString();
    const row = await w.put(samlConfigsTable, {
      org_id: orgId,
      id: samlConfigId(orgId),
      auth_provider: body.authProvider,
      is_active: body.isActive,
      entry_point: body.entryPoint,
      issuer: body.issuer,
      cert: body.cert,
      enable_group_sync: body.enableGroupSync ?? false,
      last_used: null,
      created_at: now,
      updated_at: now,
    });
    return viewFromRow(row);
  }));
}

export function patchSamlConfig(repl: Replicator, body: PatchSsoConfigBody) {
  const orgId = body.organizationId.toLowerCase();
  const changes: Row = {};
  if (body.authProvider !== undefined) changes.auth_provider = body.authProvider;
  if (body.isActive !== undefined) changes.is_active = body.isActive;
  if (body.entryPoint !== undefined) changes.entry_point = body.entryPoint;
  if (body.issuer !== undefined) changes.issuer = body.issuer;
  if (body.cert !== undefined) changes.cert = body.cert;
  if (body.enableGroupSync !== undefined) changes.enable_group_sync = body.enableGroupSync;
  return repl.write(async (w) => {
    const current = await w.lock(samlConfigsTable, orgId);
    if (!current || current.deleted_at) {
      throw noSamlConfig(orgId);
    }
    // Nothing to change: answer without a write, so no empty change event travels to every region.
    if (Object.keys(changes).length === 0) return viewFromRow(current);
    // Group sync turned on, or its provider changed while it stays on (a config stored before this rule
    // with sync on can still have its other fields changed).
    const provider = String(changes.auth_provider ?? current.auth_provider);
    const syncing = (changes.enable_group_sync ?? current.enable_group_sync) === true;
    if (syncing && (body.enableGroupSync === true || body.authProvider !== undefined) && !GROUP_SYNC_PROVIDERS.includes(provider)) throw groupSyncRefused(provider);
    const row = await w.put(samlConfigsTable, { ...current, ...changes, updated_at: new Date().toISOString() });
    return viewFromRow(row);
  });
}
