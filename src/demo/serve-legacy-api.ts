// The demo legacy API alone, as its own process (its own container in deploy/): `node dist/demo/serve-legacy-api.js [--host H] [--port P]`.
import { startLegacyApi } from './legacy-api.ts';

const USAGE = `Usage: serve-legacy-api [--host HOST] [--port PORT]
  --host  address to bind (LEGACY_API_HOST; default 127.0.0.1, use 0.0.0.0 in a container other containers call)
  --port  TCP port, 0 for any free one (LEGACY_API_PORT; default 3000)`;

/** Host and port from the flags, then the environment, then the defaults; a bad value is an error, never a silent default. */
function parseOptions(argv: string[], env: NodeJS.ProcessEnv): { host: string; port: number } {
  let host = env.LEGACY_API_HOST || '127.0.0.1';
  let rawPort = env.LEGACY_API_PORT || '3000';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (name !== '--host' && name !== '--port') throw new Error(`unknown argument '${arg}'`);
    const value = inline ?? argv[++i];
    if (!value) throw new Error(`${name} needs a value`);
    if (name === '--host') host = value;
    else rawPort = value;
  }
  if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) > 65535) throw new Error(`port must be an integer from 0 to 65535, got '${rawPort}'`);
  return { host, port: Number(rawPort) };
}

async function main(): Promise<number> {
  let options;
  try {
    options = parseOptions(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`serve-legacy-api: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const api = await startLegacyApi(options);
  // Handlers first, then the line that says it listens: whoever waits for that line may signal at once.
  const stopped = new Promise<void>((resolve) => {
    // The demo API does not drain: in deploy/ it is stopped after the gateway in front of it has drained.
    const stop = (signal: string) => {
      process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), msg: 'demo legacy API stopping', signal })}\n`);
      void api.close().then(resolve, resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), msg: 'demo legacy API listening', url: api.url, port: api.port })}\n`);
  await stopped;
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`serve-legacy-api: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
