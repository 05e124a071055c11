// OpenAPI 3.0 schemas made 2020-12's: each rewritten keyword, and sharing and recursion kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { recursiveSchemas, schema31, type JsonSchema } from './json-schema.ts';

const convert = (schema: unknown) => schema31(schema, new Map<object, JsonSchema>());

test('nullable: null among the types (and in an enum); without a type, null or the schema', () => {
  assert.deepEqual(convert({ type: 'string', nullable: true }), { type: ['string', 'null'] });
  assert.deepEqual(convert({ type: 'string', enum: ['a', 'b'], nullable: true }), { type: ['string', 'null'], enum: ['a', 'b', null] });
  assert.deepEqual(convert({ type: ['integer', 'string'], nullable: true }), { type: ['integer', 'string', 'null'] });
  assert.deepEqual(convert({ type: 'string', nullable: false }), { type: 'string' });
  assert.deepEqual(convert({ allOf: [{ type: 'object' }], nullable: true, description: 'd' }), { anyOf: [{ allOf: [{ type: 'object' }], description: 'd' }, { type: 'null' }] });
});

test('boolean exclusive bounds become numeric ones; example becomes examples', () => {
  assert.deepEqual(convert({ type: 'integer', minimum: 0, exclusiveMinimum: true, maximum: 9, exclusiveMaximum: true }), { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 9 });
  assert.deepEqual(convert({ type: 'integer', minimum: 0, exclusiveMinimum: false }), { type: 'integer', minimum: 0 });
  assert.deepEqual(convert({ type: 'integer', exclusiveMinimum: 5 }), { type: 'integer', exclusiveMinimum: 5 }, '2020-12 already');
  assert.deepEqual(convert({ type: 'string', example: 'x' }), { type: 'string', examples: ['x'] });
  assert.deepEqual(convert({ type: 'string', example: 'x', examples: ['y'] }), { type: 'string', examples: ['y'] });
});

test('every subschema is converted; property names and data are not keywords', () => {
  const converted = convert({
    type: 'object',
    properties: { nullable: { type: 'boolean', nullable: true }, list: { type: 'array', items: { type: 'string', nullable: true } } },
    additionalProperties: { type: 'number', minimum: 1, exclusiveMinimum: true },
    oneOf: [{ type: 'string', example: 'a' }],
    not: { type: 'null', nullable: true },
    default: { nullable: true },
    'x-extra': { example: 1 },
  });
  assert.deepEqual(converted, {
    type: 'object',
    properties: { nullable: { type: ['boolean', 'null'] }, list: { type: 'array', items: { type: ['string', 'null'] } } },
    additionalProperties: { type: 'number', exclusiveMinimum: 1 },
    oneOf: [{ type: 'string', examples: ['a'] }],
    not: { type: 'null' },
    default: { nullable: true },
    'x-extra': { example: 1 },
  });
});

test('a schema used twice converts to one object; one that contains itself to one that does', () => {
  const shared = { type: 'string', nullable: true };
  const tree: Record<string, any> = { type: 'object', properties: { a: shared, b: shared } };
  tree.properties.self = tree;
  const memo = new Map<object, JsonSchema>();
  const converted = schema31(tree, memo) as Record<string, any>;
  assert.equal(converted.properties.a, converted.properties.b);
  assert.equal(converted.properties.self, converted);
  assert.equal(schema31(shared, memo), converted.properties.a, 'the memo answers for every schema already converted');
  // A self-containing schema without a type made nullable keeps its identity: what points at it gets null or it.
  const loop: Record<string, any> = { nullable: true, properties: {} };
  loop.properties.next = loop;
  const again = convert(loop) as Record<string, any>;
  assert.equal(again.anyOf[0].properties.next, again);
});

test('recursiveSchemas: what contains itself other than through a named schema', () => {
  const named: Record<string, any> = { type: 'object', properties: {} };
  named.properties.parent = named;
  const unnamed: Record<string, any> = { type: 'object', properties: { named } };
  unnamed.properties.children = { type: 'array', items: unnamed };
  const plain = { type: 'string' };
  const found = recursiveSchemas([{ a: unnamed, b: plain, c: [plain, plain] }, named], new Map([[named, 'Named']]));
  assert.deepEqual([...found], [unnamed]);
});
