// Writes schema/gateway.schema.json from the TypeBox config schema, so the shipped JSON Schema can never drift from the code.
import { writeFileSync } from 'node:fs';
import { ConfigSchema } from '../src/config/schema.ts';

export const SCHEMA_FILE = new URL('../schema/gateway.schema.json', import.meta.url);

export function renderSchema(): string {
  return `${JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', ...ConfigSchema }, null, 2)}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) writeFileSync(SCHEMA_FILE, renderSchema());
