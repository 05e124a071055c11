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

/**
 * pino's generic serializer walked the fields of this line on every request and was the largest single cost of a
 * passthrough request after the network itself. The fields here are fixed, so the line is one template: the same
 * JSON pino writes (level label, ISO time, fields in order, msg last), through the same destination and its batching,
 * so lines of both kinds never interleave mid-line. Strings that can hold arbitrary text (path, route, method) are
 * escaped with JSON.stringify; the others the gateway makes itself from safe characters (ids, hashes, codes, outcomes).
 */
export class AccessLog {
  private readonly logger: Logger;
  private readonly destination: { write(line: string): unknown };

  constructor(logger: Logger) {
    this.logger = logger;
    this.destination = (logger as unknown as Record<symbol, { write(line: string): unknown }>)[pino.symbols.streamSym]!;
  }

  write(e: AccessEntry): void {
    // Follows the logger's level, which a config reload may change.
    if (!this.logger.isLevelEnabled('info')) return;
    this.destination.write(
      `{"level":"info","time":"${new Date().toISOString()}","request_id":"${e.request_id}","trace_id":"${e.trace_id}","route":${JSON.stringify(e.route)}` +
        (e.consumer === undefined ? '' : `,"consumer":"${e.consumer}"`) +
        (e.method === undefined ? '' : `,"method":${JSON.stringify(e.method)}`) +
        `,"path":${JSON.stringify(e.path)},"status":${e.status}` +
        (e.upstream_status === undefined ? '' : `,"upstream_status":${e.upstream_status}`) +
        `,"duration_ms":${e.duration_ms}` +
        (e.upstream_duration_ms === undefined ? '' : `,"upstream_duration_ms":${e.upstream_duration_ms}`) +
        `,"outcome":"${e.outcome}"` +
        (e.code === undefined ? '' : `,"code":"${e.code}"`) +
        (e.idempotency_key_hash === undefined ? '' : `,"idempotency_key_hash":"${e.idempotency_key_hash}"`) +
        `,"msg":"request"}\n`,
    );
  }
}
