// What one request costs: a route's fixed cost, or a base plus so much per item of an array in its JSON body (read whole, bounded).
import type { IncomingMessage } from 'node:http';
import { parseSize } from '../../config/units.ts';
import { readRequestBody } from '../../proxy/body.ts';
import { REQUEST_BODY_STALLED } from '../../errors/problem.ts';
import type { CostConfig } from './schema.ts';

export type CostResult =
  | { kind: 'cost'; cost: number; body: Buffer | undefined }
  /** The body is not what the cost rule expects; `connectionClose` when its rest was left unread. */
  | { kind: 'invalid'; code: 'PAYLOAD_TOO_LARGE' | 'INVALID_REQUEST' | 'REQUEST_TIMEOUT'; detail: string; connectionClose: boolean }
  | { kind: 'client_closed' };

/** The absence of a value at a JSON Pointer (undefined is not a JSON value, but a distinct marker reads better). */
const MISSING = Symbol('missing');

export class CostRule {
  readonly base: number;
  readonly perItem: number;
  /** The `items` JSON Pointer as written, and split into unescaped tokens; undefined for a fixed cost. */
  readonly items: string | undefined;
  private readonly tokens: readonly string[];
  readonly maxBodyBytes: number;
  /** Response header the upstream reports the actual cost in (lower case); undefined when the cost is not settled. */
  readonly settleHeader: string | undefined;

  constructor(config: CostConfig) {
    if (typeof config === 'number') {
      this.base = config;
      this.perItem = 0;
      this.items = undefined;
      this.tokens = [];
      this.maxBodyBytes = 0;
      this.settleHeader = undefined;
      return;
    }
    this.base = config.base;
    this.perItem = config.per_item;
    this.items = config.items;
    this.tokens = config.items === undefined || config.items === '' ? [] : config.items.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
    this.maxBodyBytes = parseSize(config.max_body);
    this.settleHeader = config.settle?.header.toLowerCase();
  }

  get readsBody(): boolean {
    return this.items !== undefined;
  }

  /** The cost of a request with `items` items (0 for a fixed cost): what the budget endpoint quotes. */
  quote(items = 0): number {
    return this.base + (this.readsBody ? this.perItem * items : 0);
  }

  /** Prices a request; reads its body only when the rule counts items in it and no earlier step has (`read`). */
  async evaluate(req: IncomingMessage, route: string, read: Buffer | undefined, bodyIdleMs: number): Promise<CostResult> {
    if (!this.readsBody) return { kind: 'cost', cost: this.base, body: read };
    const expects = `Route '${route}' prices a request by the number of items in ${this.items === '' ? 'its JSON body' : `'${this.items}' of its JSON body`}`;
    if (read !== undefined && read.length > this.maxBodyBytes) return this.tooLarge(expects, false);
    const body = read ?? (await readRequestBody(req, this.maxBodyBytes, bodyIdleMs));
    if (body === 'too_large') return this.tooLarge(expects, true);
    if (body === 'timeout') return { kind: 'invalid', code: 'REQUEST_TIMEOUT', detail: REQUEST_BODY_STALLED, connectionClose: true };
    if (body === undefined) return { kind: 'client_closed' };
    let document: unknown;
    try {
      document = JSON.parse(body.toString('utf8'));
    } catch (err) {
      const reason = body.length === 0 ? 'the request has no body' : `the body is not valid JSON (${(err as Error).message})`;
      return invalid(`${expects}, but ${reason}.`);
    }
    const found = this.resolve(document);
    if (found === MISSING) return invalid(`${expects}, but the body has no '${this.items}'.`);
    if (!Array.isArray(found)) return invalid(`${expects}, but '${this.items}' is ${describe(found)}, not a list.`);
    return { kind: 'cost', cost: this.base + this.perItem * found.length, body };
  }

  private tooLarge(expects: string, connectionClose: boolean): CostResult {
    return { kind: 'invalid', code: 'PAYLOAD_TOO_LARGE', detail: `${expects}; it reads at most ${this.maxBodyBytes} bytes of body, and this one is larger.`, connectionClose };
  }

  private resolve(document: unknown): unknown {
    let node: unknown = document;
    for (const token of this.tokens) {
      if (Array.isArray(node) && /^(0|[1-9]\d*)$/.test(token) && Number(token) < node.length) node = node[Number(token)];
      else if (node !== null && typeof node === 'object' && !Array.isArray(node) && Object.hasOwn(node, token)) node = (node as Record<string, unknown>)[token];
      else return MISSING;
    }
    return node;
  }
}

function invalid(detail: string): CostResult {
  return { kind: 'invalid', code: 'INVALID_REQUEST', detail, connectionClose: false };
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}
