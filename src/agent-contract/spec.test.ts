// Reading the legacy API's spec: what is refused before any parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from '../../test/helpers/gateway.ts';
import { MAX_SPEC_BYTES, readLegacySpec } from './spec.ts';

test('a spec larger than the bound is refused unread, saying how large it is', async () => {
  const tmp = await tempDir('agentgate-spec');
  try {
    const file = path.join(tmp.dir, 'huge.json');
    // A sparse file: its size is what is checked, so no gigabytes need writing.
    const handle = await open(file, 'w');
    await handle.truncate(MAX_SPEC_BYTES + 1);
    await handle.close();
    const reading = await readLegacySpec(file);
    assert.equal(reading.kind, 'invalid');
    assert.match(reading.kind === 'invalid' ? reading.problems[0]!.message : '', new RegExp(`is ${MAX_SPEC_BYTES + 1} bytes; a spec may be at most ${MAX_SPEC_BYTES}`));
  } finally {
    await tmp.remove();
  }
});

test('a spec that does not exist is a problem, not a crash', async () => {
  const reading = await readLegacySpec('/nonexistent/agentgate/spec.yaml');
  assert.equal(reading.kind, 'invalid');
});
