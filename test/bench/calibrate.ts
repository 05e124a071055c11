// The response_schema check in isolation: the gateway's own compile and check functions, timed in this process on the
// same documents the S*-GET scenarios serve. No sockets, no other processes: a steady figure to read the noisy
// end-to-end differences against.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compileSilentFailure } from '../../src/policies/silent-failure/policy.ts';
import { checkBody } from '../../src/policies/silent-failure/rules.ts';
import { BLOB_SCHEMA, blobDocument } from './payloads.ts';

export interface SchemaCalibration {
  points: { kib: number; us_per_check: number }[];
  /** Least-squares slope: µs per KiB of JSON.parse + ajv validation. */
  us_per_kib: number;
}

export function calibrateSchemaCheck(sizesKib: readonly number[], budgetMs = 300): SchemaCalibration {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-bench-schema-'));
  try {
    writeFileSync(path.join(dir, 'blob.schema.json'), JSON.stringify(BLOB_SCHEMA));
    const check = compileSilentFailure({ empty_body: false, response_schema: 'blob.schema.json', error_fields: [], content_type: [], max_body_bytes: '1mb' }, dir);
    if (!check) throw new Error('the response_schema rule did not compile');
    const points = sizesKib.map((kib) => {
      const body = Buffer.from(blobDocument(kib));
      if (checkBody(check.rules, body)) throw new Error(`the ${kib} KiB document fails its own schema`);
      for (let i = 0; i < 50; i++) checkBody(check.rules, body); // warm-up: let the JIT settle
      let runs = 0;
      const start = process.hrtime.bigint();
      const deadline = start + BigInt(budgetMs) * 1_000_000n;
      let now = start;
      while (now < deadline) {
        checkBody(check.rules, body);
        runs++;
        now = process.hrtime.bigint();
      }
      return { kib, us_per_check: Number(now - start) / 1000 / runs };
    });
    const n = points.length;
    const mx = points.reduce((a, p) => a + p.kib, 0) / n;
    const my = points.reduce((a, p) => a + p.us_per_check, 0) / n;
    const slope = points.reduce((a, p) => a + (p.kib - mx) * (p.us_per_check - my), 0) / points.reduce((a, p) => a + (p.kib - mx) ** 2, 0);
    return { points, us_per_kib: slope };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
