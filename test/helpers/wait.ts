// Polling for a condition that another process makes true (a reload applied, a port closed), with a readable failure.
import assert from 'node:assert/strict';

/** Polls `check` until it returns true; fails with `describe()` (read at failure time) once `timeoutMs` has passed. */
export async function until(check: () => Promise<boolean>, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not there yet (e.g. connection refused); keep polling
    }
    if (Date.now() > deadline) assert.fail(`${describe()} (waited ${timeoutMs} ms)`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
