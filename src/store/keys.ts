// Builds every store key, once, above both stores, so memory and Redis scope state identically.

/**
 * `<prefix>:{<tag>}:<kind>:<id>`. The braces make `tag` the Redis Cluster hash tag: every key of one scope
 * (one consumer's budgets, one idempotency record) lands in one slot, so a Lua script may touch them together.
 * Callers pass hashed tags and ids, never raw client values, so keys carry no secrets and stay short.
 */
export function storeKey(prefix: string, kind: string, tag: string, id = ''): string {
  return id === '' ? `${prefix}:{${tag}}:${kind}` : `${prefix}:{${tag}}:${kind}:${id}`;
}
