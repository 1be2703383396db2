import { Router, type Response } from 'express';
import type { Config } from '../config';
import { noQuery } from '../http/no-query';
import { gatherDeployment } from './deployment';
import { CONSOLE_CSS, CONSOLE_HTML, CONSOLE_ICON, CONSOLE_JS } from './page';

// Nothing but this origin's own script and stylesheet may load, and the script may only call back home.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

function asset(res: Response, type: string, body: string): void {
  res.setHeader('Content-Security-Policy', CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-cache');
  res.type(type).send(body);
}

/** The console's page and its script: no token needed, they hold no data (every figure is fetched with the token). */
export function consolePages(): Router {
  const router = Router();
  router.get('/admin/console', (_req, res) => asset(res, 'html', CONSOLE_HTML));
  router.get('/admin/console.js', (_req, res) => asset(res, 'js', CONSOLE_JS));
  router.get('/admin/console.css', (_req, res) => asset(res, 'css', CONSOLE_CSS));
  router.get('/admin/console.svg', (_req, res) => asset(res, 'svg', CONSOLE_ICON));
  return router;
}

/** GET /admin/deployment: every configured region's status, gathered by this one (behind the admin token). */
export function deploymentAdminRoutes(config: Pick<Config, 'region' | 'regions' | 'adminToken'>): Router {
  const router = Router();
  router.get('/admin/deployment', noQuery(), async (_req, res) => {
    res.json(await gatherDeployment(config));
  });
  return router;
}
