import { Type, type Static } from '@sinclair/typebox';
import { compile, Uuid } from '../http/validate';

export const CreateOrganizationBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    parent_id: Type.Optional(Uuid()),
  },
  { additionalProperties: false },
);
export type CreateOrganizationBody = Static<typeof CreateOrganizationBody>;
export const validateCreateOrganization = compile(CreateOrganizationBody);

export interface OrganizationView {
  id: string;
  name: string;
  parent_id: string | null;
  created_at: string;
}
