// Bounded reads of an upstream body for the policies that must look at it; everything they do not keep stays a stream.
import type { IncomingMessage } from 'node:http';

export type BodyRead =
  | { kind: 'complete'; body: Buffer }
  /** More than the limit: the stream is paused with `prefix` taken out of it; unshift it back to deliver the whole. */
  | { kind: 'too_large'; prefix: Buffer }
  /** The upstream closed before its body was complete (reset, fewer bytes than its Content-Length). */
  | { kind: 'truncated' }
  /** The upstream went silent for longer than the idle timeout. */
  | { kind: 'timeout' };

/** Reads the body up to `limit` bytes, with the route's idle timeout between chunks. */
export function readBounded(upstream: IncomingMessage, limit: number, idleTimeoutMs: number): Promise<BodyRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: BodyRead) => {
      clearTimeout(idle);
      upstream.off('data', onData).off('end', onEnd).off('close', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      idle.refresh();
      if (size + chunk.length > limit) {
        upstream.pause();
        upstream.unshift(chunk);
        done({ kind: 'too_large', prefix: Buffer.concat(chunks, size) });
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
    };
    const onEnd = () => done({ kind: 'complete', body: Buffer.concat(chunks, size) });
    const onClose = () => {
      if (!upstream.complete) done({ kind: 'truncated' });
    };
    const idle = setTimeout(() => {
      upstream.destroy();
      done({ kind: 'timeout' });
    }, idleTimeoutMs);
    upstream.on('data', onData).once('end', onEnd).once('close', onClose);
    // Aborts surface as 'error' too; the close handler above reports them.
    upstream.on('error', () => {});
  });
}

/**
 * Waits for the first body byte without buffering the body: resolves 'empty' when the body ends with none,
 * or 'data' with the stream paused and that first chunk put back, ready to be piped whole.
 */
export function awaitFirstByte(upstream: IncomingMessage, idleTimeoutMs: number): Promise<'data' | 'empty' | 'truncated' | 'timeout'> {
  return new Promise((resolve) => {
    const done = (result: 'data' | 'empty' | 'truncated' | 'timeout') => {
      clearTimeout(idle);
      upstream.off('data', onData).off('end', onEnd).off('close', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      if (chunk.length === 0) return;
      upstream.pause();
      upstream.unshift(chunk);
      done('data');
    };
    const onEnd = () => done('empty');
    const onClose = () => {
      if (!upstream.complete) done('truncated');
    };
    const idle = setTimeout(() => {
      upstream.destroy();
      done('timeout');
    }, idleTimeoutMs);
    upstream.on('data', onData).once('end', onEnd).once('close', onClose);
    upstream.on('error', () => {});
  });
}
