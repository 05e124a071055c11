// The one log line per request, written straight to the logger's destination in the logger's own format.
import { pino, type Logger } from 'pino';

/** What the line says of a request; undefined fields are left out, as pino leaves them out. */
export interface AccessEntry {
  readonly request_id: string;
  readonly trace_id: string;
  readonly route: string;
  readonly consumer: string | undefined;
  readonly method: string | undefined;
  readonly path: string;
  readonly status: number;
  readonly upstream_status: number | undefined;
  readonly duration_ms: number;
  readonly upstream_duration_ms: number | undefined;
  readonly outcome: string;
  readonly code: string | undefined;
  readonly idempotency_key_hash: string | undefined;
}

/** A turn that ends many requests still writes at least this often: about fifty lines. */
const MAX_PENDING_CHARS = 16 * 1024;

/**
 * Access logs holding lines of the current turn. A process that exits before the turn ends (a crash) hands them to
 * the destination first: this listener is registered at import, before any logger exists, so it runs before the one
 * with which pino writes out what its destination still holds.
 */
const withPendingLines = new Set<AccessLog>();
process.on('exit', () => {
  for (const accessLog of withPendingLines) accessLog.flush();
});

/**
 * pino's generic serializer walked the fields of this line on every request and was the largest single cost of a
 * passthrough request after the network itself. The fields here are fixed, so the line is one template: the same
 * JSON pino writes (level label, ISO time, fields in order, msg last), through the same destination and its batching,
 * so lines of both kinds never interleave mid-line. Strings that can hold arbitrary text (path, route, method) are
 * escaped with JSON.stringify; the others the gateway makes itself from safe characters (ids, hashes, codes, outcomes).
 *
 * The lines of one turn of the event loop are handed to the destination together. pino's destination (sonic-boom)
 * measures the UTF-8 length of the whole batch it holds on every write, so writing line by line cost work that grew
 * with the batch: about 7,900 instructions of a passthrough request under callgrind, against 1,100 now. The price is
 * order: within one turn, a line logged through pino may land before access lines written earlier in that turn.
 */
export class AccessLog {
  private readonly logger: Logger;
  private readonly destination: { write(lines: string): unknown };
  /** The logger's bindings (a worker's id) as pino writes them after the time: `,"worker":2`, or nothing. */
  private readonly bound: string;
  /** Lines of this turn not yet handed to the destination. */
  private pending = '';
  private readonly flushPending = () => this.flush();
  /** The ISO time up to the second ("2026-11-22T21:37:44."), remade once a second: V8's date formatting is slow. */
  private second = -1;
  private secondPrefix = '';

  constructor(logger: Logger) {
    this.logger = logger;
    this.destination = (logger as unknown as Record<symbol, { write(lines: string): unknown }>)[pino.symbols.streamSym]!;
    const bindings = JSON.stringify(logger.bindings()).slice(1, -1);
    this.bound = bindings === '' ? '' : `,${bindings}`;
  }

  write(e: AccessEntry): void {
    // Follows the logger's level, which a config reload may change.
    if (!this.logger.isLevelEnabled('info')) return;
    const first = this.pending.length === 0;
    this.pending +=
      `{"level":"info","time":"${this.isoTime()}"${this.bound},"request_id":"${e.request_id}","trace_id":"${e.trace_id}","route":${JSON.stringify(e.route)}` +
        (e.consumer === undefined ? '' : `,"consumer":${JSON.stringify(e.consumer)}`) +
        (e.method === undefined ? '' : `,"method":${JSON.stringify(e.method)}`) +
        `,"path":${JSON.stringify(e.path)},"status":${e.status}` +
        (e.upstream_status === undefined ? '' : `,"upstream_status":${e.upstream_status}`) +
        `,"duration_ms":${e.duration_ms}` +
        (e.upstream_duration_ms === undefined ? '' : `,"upstream_duration_ms":${e.upstream_duration_ms}`) +
        `,"outcome":"${e.outcome}"` +
        (e.code === undefined ? '' : `,"code":"${e.code}"`) +
        (e.idempotency_key_hash === undefined ? '' : `,"idempotency_key_hash":"${e.idempotency_key_hash}"`) +
        `,"msg":"request"}\n`;
    if (this.pending.length >= MAX_PENDING_CHARS) this.flush();
    else if (first) {
      withPendingLines.add(this);
      setImmediate(this.flushPending);
    }
  }

  /** Hands the pending lines to the destination now (at shutdown, before the last lifecycle line). */
  flush(): void {
    if (this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = '';
    withPendingLines.delete(this);
    this.destination.write(lines);
  }

  /** What pino's isoTime writes: new Date().toISOString(). */
  private isoTime(): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.second) {
      this.second = second;
      this.secondPrefix = new Date(second * 1000).toISOString().slice(0, -4);
    }
    const ms = now - second * 1000;
    return `${this.secondPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`;
  }
}
