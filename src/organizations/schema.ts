import { Type, type Static } from '@sinclair/typebox';
import type { ListFilter } from '../http/page-query';
import { compile, PLAIN_TEXT, PLAIN_TEXT_RULE, Uuid } from '../http/validate';

export const CreateOrganizationBody = Type.Object(
  {
    // Plain text, not blank: an organization is told apart by its name in the console and the admin API's lists.
    name: Type.String({
      minLength: 1,
      maxLength: 200,
      ...PLAIN_TEXT,
      description: `With ${PLAIN_TEXT_RULE}.`,
    }),
    // null: a root, as every answer shows one (a client may send back what it read).
    parent_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
  },
  { additionalProperties: false },
);
export type CreateOrganizationBody = Static<typeof CreateOrganizationBody>;
export const validateCreateOrganization = compile(CreateOrganizationBody);

export const OrganizationView = Type.Object(
  {
    id: Uuid(),
    // Without the rule: a name stored before it (or replicated from a region without it) is still read.
    name: Type.String(),
    parent_id: Type.Union([Uuid(), Type.Null()]),
    created_at: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type OrganizationView = Static<typeof OrganizationView>;

const ApiKey = Type.String({ pattern: '^sidk_[A-Za-z0-9_-]{16}\\.[A-Za-z0-9_-]{43}$', description: 'Shown only in this answer.' });

/** POST /admin/organizations: the organization and its first API key. */
export const CreatedOrganization = Type.Object({ ...OrganizationView.properties, api_key: ApiKey }, { additionalProperties: false });

/** POST /admin/organizations/{id}/api-keys. */
export const RotatedApiKey = Type.Object({ api_key: ApiKey }, { additionalProperties: false });

/** GET /admin/organizations: its filters (besides limit and offset). */
export const ORGANIZATION_FILTERS: Record<string, ListFilter> = {
  parent_id: { schema: Uuid({ description: "Only this organization's direct sub-organizations." }), takes: 'an organization id, a UUID' },
  name: { schema: Type.String({ minLength: 1, maxLength: 200, description: 'Only organizations of exactly this name.' }), takes: 'a name of 1 to 200 characters' },
};

/** GET /admin/organizations: a page, oldest first. */
export const OrganizationList = Type.Object(
  {
    organizations: Type.Array(OrganizationView),
    pagination: Type.Object(
      { limit: Type.Integer({ minimum: 1 }), offset: Type.Integer({ minimum: 0 }), total_count: Type.Integer({ minimum: 0, format: 'int64' }) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
