// What the benchmark's upstream answers and the JSON Schemas agentgate checks those answers against.

/** GET /bench/item: a small JSON object (about 100 bytes), typical of a legacy API's read. */
export const ITEM = { id: 'item-000001', name: 'widget', price: 12.5, currency: 'EUR', in_stock: true, tags: ['blue', 'small'] };

/** The body every benchmark POST sends (the upstream echoes it back). */
export const ORDER = { item: 'item-000001', quantity: 2, note: 'benchmark order' };

/** Matches ITEM. */
export const ITEM_SCHEMA = {
  type: 'object',
  required: ['id', 'name', 'price', 'in_stock'],
  properties: {
    id: { type: 'string', pattern: '^item-[0-9]+$' },
    name: { type: 'string', minLength: 1 },
    price: { type: 'number', minimum: 0 },
    currency: { type: 'string', enum: ['EUR', 'USD'] },
    in_stock: { type: 'boolean' },
    tags: { type: 'array', items: { type: 'string' } },
  },
};

/** Matches the upstream's answer to POST /bench/item: {"status":"created","echo":ORDER}. */
export const CREATED_SCHEMA = {
  type: 'object',
  required: ['status', 'echo'],
  properties: {
    status: { const: 'created' },
    echo: {
      type: 'object',
      required: ['item', 'quantity'],
      properties: { item: { type: 'string' }, quantity: { type: 'integer', minimum: 1 }, note: { type: 'string' } },
    },
  },
};

/** One element of a blob's `items`: a record of the kind a list endpoint returns, about 128 bytes of JSON. */
function blobItem(i: number): string {
  const n = String(i).padStart(6, '0');
  return JSON.stringify({ id: `item-${n}`, name: `widget number ${n}`, price: (i % 1000) + 0.5, in_stock: i % 3 !== 0, tags: ['blue', 'small', 'sale'] });
}

/**
 * A valid JSON document of `kib` KiB (within a few bytes): {"items":[...],"next":null,"pad":"..."}. Its size comes from
 * many small records, so validating it costs what validating a real list answer of that size costs.
 */
export function blobDocument(kib: number): string {
  const target = kib * 1024;
  const head = '{"items":[';
  const tail = '],"next":null,"pad":"';
  const items: string[] = [];
  let size = head.length + tail.length + 2;
  for (let i = 1; ; i++) {
    const item = blobItem(i);
    if (size + item.length + 1 > target) break;
    items.push(item);
    size += item.length + 1;
  }
  const doc = `${head}${items.join(',')}${tail}`;
  return `${doc}${'x'.repeat(Math.max(0, target - doc.length - 2))}"}`;
}

/** Matches every blob document: each of its records is checked. */
export const BLOB_SCHEMA = {
  type: 'object',
  required: ['items'],
  properties: {
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'name', 'price', 'in_stock'],
        properties: {
          id: { type: 'string', pattern: '^item-[0-9]+$' },
          name: { type: 'string', minLength: 1 },
          price: { type: 'number', minimum: 0 },
          in_stock: { type: 'boolean' },
          tags: { type: 'array', items: { type: 'string' } },
        },
      },
    },
    next: { type: ['string', 'null'] },
    pad: { type: 'string' },
  },
};
