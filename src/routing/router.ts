// Matches a request's method and path against the configured routes, in file order; the first match wins.
import { readRequestTarget } from './request-target.ts';

type Segment = { kind: 'literal'; text: string } | { kind: 'param'; name: string };

export interface PathTemplate {
  readonly segments: readonly Segment[];
  /** Template ended in /*: the path may continue with any segments, or stop right there. */
  readonly prefix: boolean;
}

/**
 * Compiles '/orders/{id}' or '/admin/*' once, at config load; throws with a readable message when malformed. Literal
 * segments are compared with a request's matchPath (src/routing/request-target.ts), so they are decoded the same way
 * and, unless routing is case-sensitive, lower-cased; a trailing slash means nothing, as it means nothing in a request.
 */
export function compilePathTemplate(template: string, caseSensitive = true): PathTemplate {
  if (!template.startsWith('/')) throw new Error(`path '${template}' must start with /`);
  let body = template.slice(1);
  if (body.endsWith('/')) body = body.slice(0, -1);
  let prefix = false;
  if (body === '*' || body.endsWith('/*')) {
    prefix = true;
    body = body.slice(0, -1);
    if (body.endsWith('/')) body = body.slice(0, -1);
    if (body === '') return { segments: [], prefix };
  }
  const names = new Set<string>();
  const segments = body.split('/').map((part): Segment => {
    if (part.startsWith('{') && part.endsWith('}')) {
      const name = part.slice(1, -1);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`'{${name}}' in '${template}' is not a valid parameter name`);
      if (names.has(name)) throw new Error(`parameter {${name}} appears twice in '${template}'`);
      names.add(name);
      return { kind: 'param', name };
    }
    if (/[{}*]/.test(part)) {
      throw new Error(`segment '${part}' of '${template}' is not allowed: use a whole segment {name}, or /* only at the end`);
    }
    if (body === '') return { kind: 'literal', text: '' }; // the root path '/'
    // A literal is read like a request's path, its non-ASCII characters as the UTF-8 escapes a client sends.
    const reading = readRequestTarget(`/${part.replace(/[^\x00-\x7f]+/gu, (text) => encodeURIComponent(text))}`, caseSensitive);
    if (reading.kind === 'refuse' || part === '') {
      throw new Error(`segment '${part}' of '${template}' can never match a request: ${reading.kind === 'refuse' ? reading.detail : 'the path has an empty segment (//)'}`);
    }
    return { kind: 'literal', text: reading.matchPath.slice(1) };
  });
  return { segments, prefix };
}

/**
 * Whether a request path (no query string) fits the template. Walks the string in place:
 * no splitting, no regex, no allocation on the hot path.
 */
export function matchesTemplate(template: PathTemplate, path: string): boolean {
  const { segments, prefix } = template;
  let pos = 1; // just past the leading '/'
  for (let i = 0; i < segments.length; i++) {
    if (pos > path.length) return false; // the path ran out of segments
    const slash = path.indexOf('/', pos);
    const end = slash === -1 ? path.length : slash;
    const segment = segments[i]!;
    if (segment.kind === 'literal') {
      if (end - pos !== segment.text.length || !path.startsWith(segment.text, pos)) return false;
    } else if (end === pos) {
      return false; // a {param} never matches an empty segment
    }
    pos = end + 1;
  }
  return prefix || pos === path.length + 1;
}

export interface Routable {
  readonly name: string;
  /** Upper-case methods the route takes; undefined takes every method. */
  readonly methods: ReadonlySet<string> | undefined;
  readonly template: PathTemplate;
}

export class Router<R extends Routable> {
  readonly routes: readonly R[];
  constructor(routes: readonly R[]) {
    this.routes = routes;
  }

  /** HEAD is served by routes that take GET, as HTTP defines it as GET without a body. */
  match(method: string, path: string): R | undefined {
    for (const route of this.routes) {
      if (route.methods && !route.methods.has(method) && !(method === 'HEAD' && route.methods.has('GET'))) continue;
      if (matchesTemplate(route.template, path)) return route;
    }
    return undefined;
  }
}
