// Bounded reads of a body (a request's, an upstream's) for the policies that must look at it; everything they do not keep stays a stream.
import type { IncomingMessage } from 'node:http';
import zlib from 'node:zlib';

export type BodyRead =
  | { kind: 'complete'; body: Buffer }
  /** More than the limit: the stream is paused with `prefix` taken out of it; unshift it back to deliver the whole. */
  | { kind: 'too_large'; prefix: Buffer }
  /** The upstream closed before its body was complete (reset, fewer bytes than its Content-Length). */
  | { kind: 'truncated' }
  /** The upstream went silent for longer than the idle timeout. */
  | { kind: 'timeout' };

export type RequestBodyRead = Buffer | 'too_large' | 'timeout' | undefined;

/**
 * A request's whole body: 'too_large' past `max` bytes (by its Content-Length at once, or as soon as it grows past; the
 * rest is left unread and the stream paused), 'timeout' when the client stays silent for `idleMs` before it is complete
 * (server.timeouts.request_body_idle), undefined when the client leaves before it is complete.
 */
export function readRequestBody(req: IncomingMessage, max: number, idleMs: number): Promise<RequestBodyRead> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) return Promise.resolve('too_large');
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const idle = req.complete ? undefined : setTimeout(() => done('timeout'), idleMs);
    const done = (result: RequestBodyRead) => {
      clearTimeout(idle);
      req.off('data', onData).off('end', onEnd).off('error', onGone).off('close', onGone);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      idle?.refresh();
      size += chunk.length;
      if (size <= max) return void chunks.push(chunk);
      req.pause();
      done('too_large');
    };
    const onEnd = () => done(Buffer.concat(chunks, size));
    const onGone = () => done(undefined);
    req.on('data', onData).once('end', onEnd).once('error', onGone).once('close', onGone);
  });
}

/**
 * The request body as the first step that needed it read it (kept in `held.requestBody`, and forwarded from there), or
 * read now and kept: however many policies look at a body, it is read once. `max` is the caller's own bound, also for
 * a body an earlier step read under a larger one.
 */
export async function readRequestBodyOnce(req: IncomingMessage, held: { requestBody?: Buffer | undefined }, max: number, idleMs: number): Promise<RequestBodyRead> {
  const read = held.requestBody;
  if (read !== undefined) return read.length > max ? 'too_large' : read;
  const body = await readRequestBody(req, max, idleMs);
  if (Buffer.isBuffer(body)) held.requestBody = body;
  return body;
}

/** Reads an upstream's body up to `limit` bytes, with the route's idle timeout between chunks. */
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

type Decoder = (body: Buffer, options: zlib.ZlibOptions & zlib.BrotliOptions) => Buffer;

/** Content codings a body can be read through; zstd where this Node has it. */
const DECODERS: Record<string, { decode: Decoder; flush: number }> = {
  gzip: { decode: zlib.gunzipSync, flush: zlib.constants.Z_SYNC_FLUSH },
  'x-gzip': { decode: zlib.gunzipSync, flush: zlib.constants.Z_SYNC_FLUSH },
  deflate: { decode: zlib.inflateSync, flush: zlib.constants.Z_SYNC_FLUSH },
  br: { decode: zlib.brotliDecompressSync, flush: zlib.constants.BROTLI_OPERATION_FLUSH },
  ...('zstdDecompressSync' in zlib
    ? { zstd: { decode: (zlib as unknown as { zstdDecompressSync: Decoder }).zstdDecompressSync, flush: zlib.constants.ZSTD_e_flush } }
    : {}),
};

export type Decoded = { kind: 'decoded'; body: Buffer } | { kind: 'too_large' } | { kind: 'unreadable'; reason: string };

/**
 * The bytes of a body as its media type sees them, undoing its Content-Encoding (gzip, deflate, br, zstd), so policies
 * inspect the JSON and not the compressed bytes; what is delivered stays exactly what the upstream sent. At most `limit`
 * bytes are produced (a small compressed body may expand enormously). `partial`: the body is only a prefix, so decode
 * what there is rather than fail on its missing end.
 */
export function decodeBody(body: Buffer, contentEncoding: string | string[] | undefined, limit: number, partial = false): Decoded {
  const header = Array.isArray(contentEncoding) ? contentEncoding.join(',') : (contentEncoding ?? '');
  const codings = header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  let decoded = body;
  // Codings are listed in the order they were applied: undo them from the last.
  for (const coding of codings.reverse()) {
    const decoder = DECODERS[coding];
    if (!decoder) return { kind: 'unreadable', reason: `content encoding '${coding}' is not supported` };
    try {
      decoded = decoder.decode(decoded, { maxOutputLength: Math.max(1, limit), ...(partial ? { finishFlush: decoder.flush } : {}) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return { kind: 'too_large' };
      return { kind: 'unreadable', reason: `the ${coding} body cannot be decoded (${(err as Error).message})` };
    }
  }
  return { kind: 'decoded', body: decoded };
}
