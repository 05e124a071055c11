// The bytes of the streaming run: generated chunk by chunk, never held whole (each side hashes what it sent or received).
import { randomBytes } from 'node:crypto';

const CHUNK_BYTES = 64 * 1024;
const BASE = randomBytes(CHUNK_BYTES);

/** `total` bytes as 64 KiB chunks: random bytes, each chunk stamped with its index so a lost or repeated chunk changes the hash. */
export function* patternChunks(total: number): Generator<Buffer> {
  let index = 0;
  for (let sent = 0; sent < total; sent += CHUNK_BYTES, index++) {
    const size = Math.min(CHUNK_BYTES, total - sent);
    const chunk = Buffer.allocUnsafe(size);
    BASE.copy(chunk, 0, 0, size);
    if (size >= 8) chunk.writeBigUInt64BE(BigInt(index), 0);
    yield chunk;
  }
}
