import type { Operation } from '../openapi/operation';
import { DeploymentStatus } from './schema';

const tags = ['Deployment console'];
const page = (path: string, contentType: string, summary: string): Operation => ({
  method: 'get', path, tags, auth: 'none', dialect: 'slashid', summary,
  responses: { 200: { description: 'Holds no data; the page fetches every figure with the admin token.', contentType } },
});

/** The OpenAPI operations of routes.ts. */
export const consoleOperations: Operation[] = [
  page('/admin/console', 'text/html', 'The deployment console (a web page)'),
  page('/admin/console.js', 'text/javascript', "The console's script"),
  page('/admin/console.css', 'text/css', "The console's stylesheet"),
  page('/admin/console.svg', 'image/svg+xml', "The console's icon"),
  {
    method: 'get', path: '/admin/deployment', tags, auth: 'admin', dialect: 'slashid',
    summary: "Every configured region's status, gathered by this region",
    description: 'A region that does not answer within the timeout shows as down; that is never an error of this call.',
    responses: { 200: { description: 'Regions and the lag matrix.', schema: DeploymentStatus } },
    errors: [400, 401],
  },
];
