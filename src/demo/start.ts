// `npm start`: the bundled misbehaving legacy API on 127.0.0.1:3000 with agentgate in front of it, serving config/gateway.yaml.
import { fileURLToPath } from 'node:url';
import { startLegacyApi } from './legacy-api.ts';
import { startGateway } from '../gateway.ts';
import { ConfigError } from '../config/load.ts';

const configFile = process.env.AGENTGATE_CONFIG ?? fileURLToPath(new URL('../../config/gateway.yaml', import.meta.url));

const legacy = await startLegacyApi({ host: '127.0.0.1', port: 3000 });
let gateway;
try {
  gateway = await startGateway({ configFile });
} catch (err) {
  await legacy.close();
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`invalid config ${configFile}:\n${err.message}\n`);
  process.exit(1);
}
process.stderr.write(
  `\nDemo legacy API: ${legacy.url} (call it directly to see it misbehave)\n` +
    `agentgate:       ${gateway.proxyUrl} (point agents here)\n` +
    `admin:           ${gateway.adminUrl}/metrics /healthz /readyz\n` +
    `Try: curl -i ${gateway.proxyUrl}/orders/ord_1   — docs/getting-started.md walks through the rest.\n\n`,
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
