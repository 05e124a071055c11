// GET /_agentgate/errors[/CODE] on the proxy port: the error catalog, so agents and their authors can look codes up.
import type { ServerResponse } from 'node:http';
import { ERROR_CATALOG, type ErrorCode } from '../errors/catalog.ts';
import { GatewayError, PROBLEM_TYPE_BASE } from '../errors/problem.ts';
import { sendJson } from './json.ts';

function entry(code: ErrorCode) {
  return { code, type: PROBLEM_TYPE_BASE + code, ...ERROR_CATALOG[code] };
}

const CATALOG_BODY = JSON.stringify({ errors: (Object.keys(ERROR_CATALOG) as ErrorCode[]).map(entry) });

/** `rest` is what follows /_agentgate/errors: '' for the whole catalog, '/CODE' for one entry. */
export function serveCatalog(rest: string, res: ServerResponse): void {
  if (rest === '' || rest === '/') {
    sendJson(res, 200, CATALOG_BODY);
    return;
  }
  // Codes are upper case; the path may have been read case-insensitively (routing.case_sensitive: false).
  const code = rest.slice(1).toUpperCase();
  if (!Object.hasOwn(ERROR_CATALOG, code)) {
    throw new GatewayError('NOT_FOUND', `There is no error code '${code.slice(0, 64)}' in the catalog; GET /_agentgate/errors lists them all.`);
  }
  sendJson(res, 200, JSON.stringify(entry(code as ErrorCode)));
}
