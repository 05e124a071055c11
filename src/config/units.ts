// Parsing of the config's duration ('250ms', '10s') and size ('512kb') strings.

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const SIZE = /^(\d+)(b|kb|mb|gb)$/;
const MS_PER_UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const BYTES_PER_UNIT: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

export function isDuration(text: string): boolean {
  return DURATION.test(text);
}

export function isSize(text: string): boolean {
  return SIZE.test(text);
}

/** Milliseconds in a validated duration string. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text);
  if (!m) throw new Error(`not a duration: ${text}`);
  return Math.round(Number(m[1]) * MS_PER_UNIT[m[2]!]!);
}

/** A whole number of milliseconds as the config writes durations: the largest unit that divides it (20000 -> '20s'). */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms !== 0 && ms % MS_PER_UNIT[unit]! === 0) return `${ms / MS_PER_UNIT[unit]!}${unit}`;
  }
  return `${ms}ms`;
}

/** Bytes in a validated size string. */
export function parseSize(text: string): number {
  const m = SIZE.exec(text);
  if (!m) throw new Error(`not a size: ${text}`);
  return Number(m[1]) * BYTES_PER_UNIT[m[2]!]!;
}

/** Whether a host (as written in a URL, a Host header or a listen address, IPv6 bracketed or not) names this machine's loopback. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** host:port, [v6]:port; the port must be 0-65535. */
export function parseListenAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}
