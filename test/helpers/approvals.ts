// What the approvals tests share: an admin token, two agents with keys of their own, and the head of a config that
// verifies them and sends to one upstream, `crm`.
import { randomBytes } from 'node:crypto';
import { keyHash, newKey } from '../../src/agents/keys.ts';
import { configYaml } from './gateway.ts';

/** Given to the gateway as ${ADMIN_TOKEN} (startTestGateway's env), so it is never written in a file. */
export const ADMIN_TOKEN = 'admin-token-' + randomBytes(12).toString('hex');
export const alice = newKey();
export const mallory = newKey();

export const AGENTS = `agents:
  - {id: alice, keys: ['${keyHash(alice)}']}
  - {id: mallory, keys: ['${keyHash(mallory)}']}
`;

/** A config: server.admin_token from ${ADMIN_TOKEN}, the agents of agents.yaml, upstream crm at `upstreamUrl`, then `rest`. */
export function approvalsConfig(upstreamUrl: string, rest: string): string {
  return configYaml(`  admin_token: \${ADMIN_TOKEN}
consumers:
  authenticate: {api_keys: {file: agents.yaml}}
upstreams:
  crm: {url: '${upstreamUrl}'}
${rest}`);
}
