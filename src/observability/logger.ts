// pino JSON logs: one line per request plus lifecycle events; secrets are never passed in, and redaction is the backstop.
import { pino, type Logger, type DestinationStream } from 'pino';

/** Paths pino blanks out should a header bag or a credential ever reach a log call. */
const REDACT_PATHS = [
  'headers.authorization',
  'headers.cookie',
  'headers["set-cookie"]',
  'headers["x-api-key"]',
  'headers["idempotency-key"]',
  'headers["proxy-authorization"]',
  'headers["x-agent-key"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["set-cookie"]',
  '*.headers["x-api-key"]',
  '*.headers["idempotency-key"]',
  '*.headers["proxy-authorization"]',
  '*.headers["x-agent-key"]',
];

/**
 * Lines are written in batches of about this many bytes: one write per request cost more than formatting the line
 * (a thread-pool hand-off and a syscall each). pino flushes what is left when the process exits.
 */
const BATCH_BYTES = 4096;
/** ...and never later than this after they were logged, so a quiet gateway's lines still show up promptly. */
const BATCH_MAX_DELAY_MS = 100;

/** `bindings` go on every line (a worker's id). */
export function createLogger(level: string, destination?: DestinationStream, bindings?: Record<string, unknown>): Logger {
  return pino(
    {
      level,
      base: bindings,
      messageKey: 'msg',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    destination ?? pino.destination({ dest: 1, sync: false, minLength: BATCH_BYTES, periodicFlush: BATCH_MAX_DELAY_MS }),
  );
}

export type { Logger };
