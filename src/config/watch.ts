// Watching a file the gateway reloads (the config, the agents file): the folder, not the file, and a burst of events
// settles before anything is read.
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** How long a file-change burst (editors write, rename and chmod in quick succession) is left to settle before reloading. */
const RELOAD_DEBOUNCE_MS = 150;

/**
 * Watches the file's folder rather than the file: editors replace files by rename, and Kubernetes swaps a ConfigMap or
 * Secret through a `..data` symlink, neither of which a watch on the file itself would see.
 */
export function watchFile(file: string, onChange: () => Promise<void>, onError: (err: Error) => void): FSWatcher {
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(path.dirname(file), { persistent: false }, () => {
    clearTimeout(timer);
    timer = setTimeout(() => void onChange(), RELOAD_DEBOUNCE_MS);
  });
  watcher.on('error', (err) => {
    clearTimeout(timer);
    watcher.close();
    onError(err);
  });
  watcher.on('close', () => clearTimeout(timer));
  return watcher;
}

/** The SHA-256 of a file's bytes, to tell a real change from a watcher's spurious event; undefined while it cannot be read. */
export async function fileDigest(file: string): Promise<string | undefined> {
  try {
    return createHash('sha256').update(await readFile(file)).digest('hex');
  } catch {
    return undefined; // mid-swap: the next event will catch the final state
  }
}
