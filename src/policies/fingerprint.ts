// What makes two requests "the same request", shared by the policies that bind something to one exact request: an
// idempotency record (a key reused for another request is refused) and an approval (it covers one request only).
import { hash } from 'node:crypto';

/**
 * What makes two requests "the same request": method, path, query (exactly as sent) and body bytes. Each part is
 * length-prefixed, so no two different requests can produce the same input.
 */
export function fingerprint(method: string, target: string, body: Buffer): string {
  const head = `${Buffer.byteLength(method)}:${method}\n${Buffer.byteLength(target)}:${target}\n${body.length}:`;
  // One-shot hashing of one buffer: a Hash object per request cost more than copying a body bounded by max_body_bytes.
  return hash('sha256', Buffer.concat([Buffer.from(head), body]), 'base64url');
}
