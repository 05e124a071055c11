// `npm start`: the bundled misbehaving legacy API with agentgate in front of it, serving config/gateway.yaml (or the
// file AGENTGATE_CONFIG names). The legacy API listens where the config's first upstream points (127.0.0.1:3000 in
// config/gateway.yaml), so one file chooses all three ports of the demo. The banner prints the demo's agent keys.
import { fileURLToPath } from 'node:url';
import { startLegacyApi, type LegacyApi } from './legacy-api.ts';
import { releaseStartUpMemory, startGateway, StartError, type Gateway } from '../gateway.ts';
import { ConfigError, loadConfigFile, type LoadedConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { parseListenAddress } from '../config/units.ts';
import { keyHash } from '../agents/keys.ts';

const DEFAULT_CONFIG = fileURLToPath(new URL('../../config/gateway.yaml', import.meta.url));
const configFile = process.env.AGENTGATE_CONFIG || DEFAULT_CONFIG;

/**
 * The demo's agent keys; config/agents.yaml lists their SHA-256 (demo-agent, reporter, batch-agent). DEMO KEYS: the
 * banner and docs/getting-started.md print them for anyone to read, so they must never open a real API.
 */
const DEMO_KEYS: readonly string[] = [
  'agk_AC_xiepRgy8OlsB9gySxPiBOyFSjxjh4U8xPGrI1Qug',
  'agk_sAgjpWj_OAvSKAe_7SYoBzEfOjIbdcxWN_zOndRD3ak',
  'agk_SUTWuaP_AIuGxqn0zgCIjkADBfH9ITgXJYFrlwXTQME',
];

interface DemoAgent {
  id: string;
  scopes: readonly string[];
  key: string;
}

/** The demo keys the config's agents file lists, with their agents: none when AGENTGATE_CONFIG names other agents. */
function demoAgents(loaded: LoadedConfig): DemoAgent[] {
  const agents = loaded.agents?.agents ?? [];
  return DEMO_KEYS.flatMap((key) => {
    const hash = keyHash(key);
    const agent = agents.find((a) => a.keys.includes(hash));
    return agent ? [{ id: agent.id, scopes: agent.scopes, key }] : [];
  });
}

/** The banner's lines about agent keys, and the header its first example sends (one that may read orders). */
function keysBanner(config: Config, agents: DemoAgent[]): { lines: string; header: string } {
  if (config.consumers.authenticate === undefined) return { lines: '', header: '' };
  if (agents.length === 0) return { lines: '', header: " -H 'Authorization: Bearer <a key of your agents file>'" };
  const width = Math.max(...agents.map((a) => a.id.length));
  const rows = agents.map((a, i) => {
    const label = i === 0 ? 'Agent keys:' : '';
    return `${label.padEnd(17)}${a.id.padEnd(width)}  ${a.key}  ${a.scopes.join(' ') || '(no scopes)'}\n`;
  });
  const note = '(DEMO KEYS, public: never put them in front of a real API. Send one as Authorization: Bearer <key>)';
  const lines = `${rows.join('')}${' '.repeat(17)}${note}\n`;
  const reader = agents.find((a) => a.scopes.includes('orders:read')) ?? agents[0]!;
  return { lines, header: ` -H 'Authorization: Bearer ${reader.key}'` };
}

/** Where the demo legacy API listens: the first upstream the config sends plain HTTP to on this machine, else 127.0.0.1:3000. */
function legacyApiAddress(config: Config): { host: string; port: number } {
  for (const upstream of Object.values(config.upstreams)) {
    const url = new URL(upstream.url);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (url.protocol === 'http:' && ['127.0.0.1', 'localhost', '::1'].includes(host)) return { host, port: Number(url.port || 80) };
  }
  return { host: '127.0.0.1', port: 3000 };
}

/**
 * One line for a port the demo cannot listen on, instead of node's stack trace: which port, what it is for, and what to
 * do. A taken port is by far the most common case (often an earlier `npm start` still running).
 */
function cannotListenLine(err: unknown, role: string): string {
  const cause = (err instanceof StartError ? err.cause : err) as NodeJS.ErrnoException & { address?: string; port?: number };
  const where = cause?.port !== undefined ? `${cause.address ?? ''}:${cause.port}` : 'its address';
  if (cause?.code === 'EADDRINUSE' && cause.port !== undefined) {
    return (
      `agentgate demo: port ${cause.port} (${role}) is already in use on ${cause.address ?? 'this machine'}. ` +
      `Stop what listens there (an earlier npm start? \`ss -ltnp 'sport = :${cause.port}'\` shows it), ` +
      `or run the demo on other ports: copy config/gateway.yaml to config/my-demo.yaml, change its server.listen, ` +
      `server.admin_listen and upstream urls, and start it with AGENTGATE_CONFIG=config/my-demo.yaml npm start.`
    );
  }
  return `agentgate demo: cannot listen on ${where} (${role}): ${cause instanceof Error ? cause.message : String(cause)}.`;
}

/** What a port of the config is for, to name it in cannotListenLine. */
function roleOf(config: Config, err: unknown): string {
  const port = ((err instanceof StartError ? err.cause : err) as { port?: number } | undefined)?.port;
  if (port === parseListenAddress(config.server.listen)?.port) return "agentgate's proxy port, server.listen";
  if (port === parseListenAddress(config.server.admin_listen)?.port) return "agentgate's admin port, server.admin_listen";
  return 'agentgate';
}

function fail(line: string): never {
  process.stderr.write(`${line}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  let loaded: LoadedConfig;
  try {
    loaded = await loadConfigFile(configFile);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    fail(`invalid config ${configFile}:\n${err.message}`);
  }
  const config = loaded.config;

  let legacy: LegacyApi;
  try {
    legacy = await startLegacyApi(legacyApiAddress(config));
  } catch (err) {
    fail(cannotListenLine(err, 'the demo legacy API'));
  }

  let gateway: Gateway;
  try {
    gateway = await startGateway({ configFile });
  } catch (err) {
    await legacy.close();
    if (err instanceof StartError) fail(cannotListenLine(err, roleOf(config, err)));
    if (err instanceof ConfigError) fail(`invalid config ${configFile}:\n${err.message}`);
    throw err;
  }
  releaseStartUpMemory();

  // The first example answers 200 on a fresh demo (GET /orders/ord_1 would be a 404 until an order exists).
  const keys = keysBanner(config, demoAgents(loaded));
  process.stderr.write(
    `\nDemo legacy API: ${legacy.url} (call it directly to see it misbehave)\n` +
      `agentgate:       ${gateway.proxyUrl} (point agents here${keys.header ? ', each with its key' : ''})\n` +
      `admin:           ${gateway.adminUrl}/metrics /healthz /readyz\n` +
      keys.lines +
      `Try:             curl -i ${gateway.proxyUrl}/orders${keys.header}\n` +
      `                 (200: the list of orders, empty on a fresh demo, with X-Request-Id and X-RateLimit-* headers); docs/getting-started.md walks through the rest.\n\n`,
  );
  const running = gateway;
  const stop = async () => {
    await running.shutdown();
    await legacy.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
  process.on('SIGHUP', () => void running.reload('SIGHUP'));
}

await main();
