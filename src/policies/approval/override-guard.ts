// A POST on a path that an approval route holds back for other methods (DELETE /customers/{id}) may name that method
// in its body: Rack's MethodOverride (in every Rails app) and Laravel read `_method` from a form or JSON body and run
// it, so a catch-all route would execute, unapproved, what the approval route guards. Such a body is refused. Only
// POSTs on those paths are read (bounded): every other request streams as before.
import { compilePathTemplate, matchesTemplate, type PathTemplate } from '../../routing/router.ts';
import { GatewayError, requestBodyStalled } from '../../errors/problem.ts';
import { parseSize } from '../../config/units.ts';
import { readRequestBodyOnce } from '../../proxy/body.ts';
import { CLIENT_CLOSED, CONTINUE, refuse, type Exchange, type Policy, type PolicyFactory, type Verdict } from '../contract.ts';

/** The approval routes a POST could reach another way: their path templates, and the first route's name, per load. */
interface Guarded {
  readonly templates: readonly { readonly route: string; readonly template: PathTemplate }[];
}

export const approvalOverrideGuard: PolicyFactory = {
  name: 'approval-override-guard',
  compile: ({ route, config, shared, deps }) => {
    if (route.approval || (route.match.methods && !route.match.methods.includes('POST'))) return undefined;
    const guarded = shared('approval-override-guard', (): Guarded => ({
      templates: config.routes
        .filter((r) => r.approval && r.match.methods && !r.match.methods.includes('POST'))
        .map((r) => ({ route: r.name, template: compilePathTemplate(r.match.path, config.routing.case_sensitive) })),
    }));
    if (guarded.templates.length === 0) return undefined;
    const maxBodyBytes = Math.max(...config.routes.flatMap((r) => (r.approval ? [parseSize(r.approval.max_body_bytes)] : [])));
    return new ApprovalOverrideGuard(guarded, maxBodyBytes, deps.requestBodyIdleMs);
  },
};

export class ApprovalOverrideGuard implements Policy {
  readonly name = 'approval-override-guard';
  private readonly guarded: Guarded;
  private readonly maxBodyBytes: number;
  private readonly requestBodyIdleMs: number;

  constructor(guarded: Guarded, maxBodyBytes: number, requestBodyIdleMs: number) {
    this.guarded = guarded;
    this.maxBodyBytes = maxBodyBytes;
    this.requestBodyIdleMs = requestBodyIdleMs;
  }

  async onRequest(ex: Exchange): Promise<Verdict> {
    const { req, ctx } = ex;
    if (req.method !== 'POST') return CONTINUE;
    const held = this.guarded.templates.find((g) => matchesTemplate(g.template, ctx.matchPath));
    if (held === undefined) return CONTINUE;
    const read = await readRequestBodyOnce(req, ctx, this.maxBodyBytes, this.requestBodyIdleMs);
    if (read === undefined) return CLIENT_CLOSED;
    if (read === 'timeout') return refuse(requestBodyStalled());
    if (read === 'too_large') {
      return refuse(new GatewayError('PAYLOAD_TOO_LARGE', `A POST on a path that route '${held.route}' holds for approval may carry at most ${this.maxBodyBytes} bytes here.`, { headers: { connection: 'close' } }));
    }
    if (!namesMethod(read, req.headers['content-type'])) return CONTINUE;
    return refuse(
      new GatewayError(
        'INVALID_REQUEST',
        `The body names another method (_method), which the API would run instead of POST; on this path route '${held.route}' holds that for approval. Send the request with its own method.`,
      ),
    );
  }
}

/**
 * Whether a form or JSON body carries a `_method` field (any case), as Rack, Laravel and Symfony read it. A POST
 * without a Content-Type is read as a form too: Rack parses it as one.
 */
export function namesMethod(body: Buffer, contentType: string | undefined): boolean {
  const type = (contentType ?? '').trim().toLowerCase();
  const text = body.toString('latin1');
  if (type === '' || type.includes('application/x-www-form-urlencoded')) {
    for (const key of new URLSearchParams(text).keys()) if (key.toLowerCase() === '_method') return true;
    return false;
  }
  if (type.includes('multipart/form-data')) return /name\s*=\s*"?_method"?/i.test(text);
  if (type.includes('json')) {
    try {
      const parsed = JSON.parse(body.toString('utf8')) as unknown;
      return typeof parsed === 'object' && parsed !== null && Object.keys(parsed).some((key) => key.toLowerCase() === '_method');
    } catch {
      return false;
    }
  }
  return false;
}
