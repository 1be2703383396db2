import { poolOf, type Db, type SqlReader } from '../db/client';
import type { Queryable, Statement } from '../replication/row-store';
import { defineTable, type Row } from '../replication/tables';
import { organizationsTable } from '../organizations/store';

/**
 * A credential's tombstone: the key, deleted_at and the NOT NULL minimums, not the payload (a deleted
 * credential's label, URL and IdP metadata are neither stored nor replicated); put stamps the version.
 */
export const credentialTombstone = (c: Row, deletedAt: string): Row => ({
  id: c.id,
  org_id: c.org_id,
  label: '',
  idp_metadata_url: '',
  email_claims: [],
  enable_in_slashid_oidc_authz_server: false,
  home_region: c.home_region,
  idp_trust: null,
  created_at: c.created_at,
  deleted_at: deletedAt,
});

/** An organization's credentials: deleted with it (its delete's change, or the part sweep's batches). */
export const credentialsTable = defineTable('saml_provider_credentials', 'id', {
  ownedBy: { table: organizationsTable, column: 'org_id', tombstone: credentialTombstone },
});
/**
 * A credential's IdP metadata: deleted with the credential (its tombstone carries no document). Unguessed:
 * a write keeps no copy of the document to build on (a PATCH of the URL, a refresh and a delete read it).
 */
export const metadataTable = defineTable('saml_credential_metadata', 'credential_id', {
  unguessed: true,
  partOf: {
    table: credentialsTable,
    tombstone: (m, deletedAt) => ({ credential_id: m.credential_id, org_id: m.org_id, idp_metadata_url: '', metadata: {}, trust_id: null, created_at: m.created_at, deleted_at: deletedAt }),
  },
});

/** A row of LIST_CREDENTIALS: the organization's live count, and one credential of the page (null past its end). */
type ListRow = { total: number } & (ListedCredential | { [K in keyof ListedCredential]: null });
type ListedCredential = Omit<StoredCredential, 'homeRegion'>;

/**
 * The page and the total in one statement, so one snapshot: as two queries (they ran side by side on two
 * connections), a write committed between them made `total_count` disagree with the page. The count is the
 * outer side of the join, so a page past the end still carries it (one row of nulls). Both sides walk the
 * (org_id, created_at, id) index. A prepared statement on the pool, as findCredential (see poolOf).
 * email_claims, a nullable column no API write leaves NULL, reads as [] when it is (as the ORM reads it).
 */
const LIST_CREDENTIALS = {
  name: 'list_credentials',
  text: `SELECT n.total, c.id, c.label, c."idpMetadataUrl", c."emailClaims", c."enableInSlashidOidcAuthzServer"
    FROM (SELECT count(*)::int AS total FROM saml_provider_credentials WHERE org_id = $1::uuid AND deleted_at IS NULL) n
    LEFT JOIN LATERAL (
      SELECT id, label, idp_metadata_url AS "idpMetadataUrl", COALESCE(email_claims, '{}') AS "emailClaims",
        enable_in_slashid_oidc_authz_server AS "enableInSlashidOidcAuthzServer", created_at
      FROM saml_provider_credentials WHERE org_id = $1::uuid AND deleted_at IS NULL
      ORDER BY created_at, id LIMIT $2::int OFFSET $3::int) c ON true
    ORDER BY c.created_at, c.id`,
};

/** One page of the organization's live credentials (oldest first) and how many it has, read at one moment. */
export async function listCredentials(db: Db, orgId: string, limit: number, offset: number): Promise<{ rows: ListedCredential[]; total: number }> {
  const res = await poolOf(db).query<ListRow>({ ...LIST_CREDENTIALS, values: [orgId, limit, offset] });
  const rows = res.rows.filter((r): r is ListRow & ListedCredential => r.id !== null).map(({ total: _total, ...credential }) => credential);
  return { rows, total: res.rows[0]?.total ?? 0 };
}

export function findMetadata(db: Db, credentialId: string) {
  return db.samlCredentialMetadata.findFirst({ where: { credentialId, deletedAt: null } });
}

/** The columns a read of one credential answers with (the fields of viewFromModel, and its home region). */
export interface StoredCredential {
  id: string;
  label: string;
  idpMetadataUrl: string;
  emailClaims: string[];
  enableInSlashidOidcAuthzServer: boolean;
  homeRegion: string;
}

/**
 * A prepared statement (named: parsed and planned once per connection). Both ids are validated UUIDs. A NULL
 * email_claims reads as [], as in the list: the answer's field is an array.
 */
const FIND_CREDENTIAL = {
  name: 'find_credential',
  text: `SELECT id, label, idp_metadata_url AS "idpMetadataUrl", COALESCE(email_claims, '{}') AS "emailClaims",
    enable_in_slashid_oidc_authz_server AS "enableInSlashidOidcAuthzServer", home_region AS "homeRegion"
    FROM saml_provider_credentials WHERE id = $1 AND org_id = $2 AND deleted_at IS NULL`,
};

/** A live credential of the organization, or null. The most frequent read: on the pool, not the ORM (see poolOf). */
export async function findCredential(db: Db, orgId: string, id: string): Promise<StoredCredential | null> {
  const res = await poolOf(db).query<StoredCredential>({ ...FIND_CREDENTIAL, values: [id, orgId] });
  return res.rows[0] ?? null;
}

/** The adopter rendezvous hashing picks among `adopters` (an SQL text[]) for credential id `id` (SQL text): one query, null when none. */
const adopterPick = (adopters: string, id: string): string => `(SELECT a FROM unnest(${adopters}) a ORDER BY md5(a || '/' || ${id}) DESC, a LIMIT 1)`;

/**
 * Whether this region refreshes credential `c` (an alias with `home_region` and `id`): it is the credential's
 * home, or its home was removed from the deployment and this region is the one of the adopters that
 * rendezvous hashing picks for the credential (each credential its own pick, so the adopted ones spread over
 * the regions, and a change of the adopters moves only the credentials of the regions that come or go).
 * Parameters from `$p`: this region, the departed regions, the adopters (DepartureState; no adopters while
 * this region may not adopt, and then the home alone counts).
 * Only while the credential's organization is live here: a deleted organization's credentials (those its
 * delete's change did not take, or one written in another region before the delete arrived) are never fetched
 * for again, and their schedules are dropped as another region's are.
 */
export const refreshedHere = (c: string, p: number): string =>
  `((${c}.home_region = $${p} OR (${c}.home_region = ANY($${p + 1}::text[])
     AND $${p} = ${adopterPick(`$${p + 2}::text[]`, `${c}.id::text`)}))
    AND EXISTS (SELECT FROM organizations o WHERE o.id = ${c}.org_id AND o.deleted_at IS NULL))`;

type DepartureScope = { departed: readonly string[]; adopters: readonly string[] };

/** refreshedHere's parameters, in order. */
export function refreshScope(region: string, scope: DepartureScope): [string, string[], string[]] {
  return [region, [...scope.departed], [...scope.adopters]];
}

/**
 * The refresh schedules (alias `s`) of the live credentials (alias `c`) this region refreshes (refreshedHere,
 * its parameters as `$1`–`$3`): what the refresher's admin route and its /metrics figures read.
 */
export const REFRESHED_SCHEDULES = `metadata_refresh_state s JOIN saml_provider_credentials c ON c.id = s.credential_id AND ${refreshedHere('c', 1)} AND c.deleted_at IS NULL`;

/**
 * isCurrentMetadata (trust.ts) in SQL, of metadata row `m` and credential row `c`: for the credential's URL,
 * and made under its trust setting or a newer one (the setting as trustSettingOf reads it: id and url strings).
 * Reads the metadata row's small columns only, not its document.
 */
export const currentMetadata = (m: string, c: string) =>
  `(${m}.idp_metadata_url = ${c}.idp_metadata_url AND (${m}.trust_id IS NULL
     OR jsonb_typeof(${c}.idp_trust->'id') IS DISTINCT FROM 'string' OR jsonb_typeof(${c}.idp_trust->'url') IS DISTINCT FROM 'string'
     OR ${m}.trust_id >= (${c}.idp_trust->>'id') COLLATE "C"))`;

/** A credential's refresh schedule, when this region refreshes it (its home, or its adopter now): else null. */
export async function refreshScheduleHere(db: SqlReader, id: string, region: string, scope: DepartureScope) {
  const rows = await db.$queryRawUnsafe<
    { next_at: Date; last_attempt_at: Date | null; last_success_at: Date | null; last_error: string | null; consecutive_failures: number }[]
  >(
    `SELECT s.next_at, s.last_attempt_at, s.last_success_at, s.last_error, s.consecutive_failures FROM ${REFRESHED_SCHEDULES} WHERE s.credential_id = $4::uuid`,
    ...refreshScope(region, scope), id,
  );
  return rows[0] ?? null;
}

/**
 * The adopter refreshedHere gives credential `id` of a removed region (rendezvous hashing over `adopters`), or
 * null when there are none (this region does not know them while it waits to adopt: DepartureState.adopters).
 */
export async function adopterOf(db: SqlReader, id: string, adopters: readonly string[]): Promise<string | null> {
  if (adopters.length === 0) return null;
  const rows = await db.$queryRawUnsafe<{ a: string | null }[]>(`SELECT ${adopterPick('$1::text[]', '$2::uuid::text')} AS a`, [...adopters], id);
  return rows[0]?.a ?? null;
}

export type RefreshOutcome = { ok: true } | { ok: false; code: string; message: string };

/**
 * Records a metadata fetch (at a write or by the refresh job) and schedules the next one. Local, not
 * replicated. Raw SQL: it also goes with replicated writes, whose transactions are raw (replicator.ts).
 */
export async function recordRefresh(db: Queryable, credentialId: string, nextAt: Date, outcome: RefreshOutcome): Promise<void> {
  const st = refreshStatement(credentialId, nextAt, outcome);
  await db.$executeRawUnsafe(st.sql, ...st.values);
}

/** recordRefresh as a statement (for WriteContext.later): prepared where it goes through a pipelined transaction. */
export function refreshStatement(credentialId: string, nextAt: Date, outcome: RefreshOutcome): Statement {
  const now = new Date().toISOString();
  if (outcome.ok) {
    return {
      sql: `INSERT INTO metadata_refresh_state (credential_id, next_at, last_attempt_at, last_success_at, last_error, last_error_code, consecutive_failures)
       VALUES ($1::uuid, $2::timestamptz, $3::timestamptz, $3::timestamptz, NULL, NULL, 0)
       ON CONFLICT (credential_id) DO UPDATE SET next_at = EXCLUDED.next_at, last_attempt_at = EXCLUDED.last_attempt_at,
         last_success_at = EXCLUDED.last_success_at, last_error = NULL, last_error_code = NULL, consecutive_failures = 0`,
      values: [credentialId, nextAt.toISOString(), now],
      exec: true,
      // Every create sends it: planned each time it cost the backend ~40 µs more (docs/performance.md, 39th session).
      prepare: true,
    };
  }
  return {
    sql: `INSERT INTO metadata_refresh_state (credential_id, next_at, last_attempt_at, last_error, last_error_code, consecutive_failures)
     VALUES ($1::uuid, $2::timestamptz, $3::timestamptz, $4::text, $5::text, 1)
     ON CONFLICT (credential_id) DO UPDATE SET next_at = EXCLUDED.next_at, last_attempt_at = EXCLUDED.last_attempt_at,
       last_error = EXCLUDED.last_error, last_error_code = EXCLUDED.last_error_code,
       consecutive_failures = metadata_refresh_state.consecutive_failures + 1`,
    values: [credentialId, nextAt.toISOString(), now, outcome.message, outcome.code],
    exec: true,
    prepare: true,
  };
}

/** The SQLSTATE of a create that would take the organization past its credential limit (limitCheck). */
export const LIMIT_SQLSTATE = 'SC001';
/** The SQLSTATE of a create whose organization was deleted here before it committed (limitCheck). */
export const ORG_DELETED_SQLSTATE = 'SC002';

/**
 * Fails the write (ORG_DELETED_SQLSTATE) unless the organization is live here: a metadata refresh's store, sent
 * with its commit (WriteContext.later), so it costs no round trip. The refresh selected a credential of a live
 * organization, but its fetch may take seconds; an organization deleted meanwhile, whose delete did not take
 * this credential (past its batch, or written in another region before the delete arrived), would otherwise get
 * a new document stored and replicated for it. A delete that commits after this statement's snapshot orders
 * after the refresh, as if the refresh had finished a moment earlier: what it did not take is the sweep's, as
 * before. Neither the organization's per-key lock nor its row lock (FOR SHARE) is taken: the refresh holds the
 * credential's, which a delete takes after both (a deadlock).
 */
export function organizationLiveCheck(orgId: string): Statement {
  return {
    sql: `SELECT replication_check(EXISTS (SELECT FROM organizations WHERE id = $1::uuid AND deleted_at IS NULL), '${ORG_DELETED_SQLSTATE}', '')`,
    values: [orgId],
    exec: true,
    prepare: true,
  };
}

/**
 * Checks, under the organization's lock and after the create's own row, that the organization is live
 * (ORG_DELETED_SQLSTATE: its delete committed here while the create ran, after the key was checked; the
 * delete holds the same lock) and holds at most `max` live credentials; fails the transaction with
 * LIMIT_SQLSTATE and, as the message, how many it held before this create. Sent with the create's last round trip (WriteContext.later), so the lock that
 * serializes an organization's creates in this region is held for that round trip only.
 */
export function limitCheck(orgId: string, max: number): Statement {
  return {
    // Counted up to max + 1 only (all of them for the refusal's message): the check costs what the limit
    // allows, however many rows the organization held before a lower limit was configured.
    sql: `WITH n AS (SELECT count(*) AS n FROM (SELECT FROM saml_provider_credentials WHERE org_id = $1::uuid AND deleted_at IS NULL LIMIT $2::int + 1) live)
      SELECT replication_check(EXISTS (SELECT FROM organizations WHERE id = $1::uuid AND deleted_at IS NULL), '${ORG_DELETED_SQLSTATE}', ''),
        replication_check(n <= $2::int, '${LIMIT_SQLSTATE}', CASE WHEN n > $2::int THEN (SELECT count(*) - 1 FROM saml_provider_credentials
        WHERE org_id = $1::uuid AND deleted_at IS NULL)::text END) FROM n`,
    values: [orgId, max],
    exec: true,
    prepare: true,
  };
}
