// The shapes of agent credentials: keys (made at random, kept only as their SHA-256, recognised by their prefix), and
// what a JWT looks like before anything verifies it.
import { createHash, randomBytes } from 'node:crypto';

/** What every agentgate key starts with: a secret scanner (GitHub's, trufflehog) can be taught the pattern. */
export const KEY_PREFIX = 'agk_';
/** 32 random bytes, base64url: 43 characters. */
const KEY_RANDOM_BYTES = 32;
/** A key as issued: the prefix and 43 base64url characters. Nothing else is ever looked up. */
const KEY_PATTERN = /^agk_[A-Za-z0-9_-]{43}$/;
/** A key anywhere in a text, also URL-encoded (agk%5F...): for redacting and refusing keys where they do not belong. */
export const KEY_IN_TEXT_PATTERN = 'agk(?:_|%5[Ff])[A-Za-z0-9_-]{8,}';

/** How agents.yaml names a key: its SHA-256, hex. */
export const KEY_HASH_PATTERN = '^sha256:[0-9a-f]{64}$';

export function newKey(): string {
  return KEY_PREFIX + randomBytes(KEY_RANDOM_BYTES).toString('base64url');
}

/** The form agents.yaml stores a key in. */
export function keyHash(key: string): string {
  return `sha256:${createHash('sha256').update(key).digest('hex')}`;
}

/** Whether `text` has the shape of an issued key (checked before hashing, so a 100 KB header is never hashed). */
export function isKeyShaped(text: string): boolean {
  return text.length === KEY_PREFIX.length + 43 && KEY_PATTERN.test(text);
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Three base64url segments separated by dots (the last empty for an unsigned token, refused later with its reason). */
export function looksLikeJwt(token: string): boolean {
  return JWT_SHAPE.test(token);
}
