// The agents file in force: reloaded when it changes, checked against the config in force, the last good one kept.
import type { FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
import { agentsCheckContext, ConfigError, loadAgentsFile, type LoadedAgents } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { fileDigest, watchFile } from '../config/watch.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { Authenticator } from './authenticate.ts';
import { AgentRegistry } from './registry.ts';

/** What the watch acts on: the config in force (overrides are checked against its policies) and its authenticator. */
export interface AgentsTarget {
  readonly config: Config;
  readonly authenticator: Authenticator | undefined;
}

export class AgentsFileWatch {
  private readonly logger: Logger;
  private readonly metrics: GatewayMetrics;
  private readonly target: () => AgentsTarget;
  private readonly watchFiles: boolean;
  private file: string | undefined;
  private appliedDigest: string | undefined;
  /** Content already refused (and logged, and counted): the watcher does not try it again. */
  private rejectedDigest: string | undefined;
  private watcher: FSWatcher | undefined;
  private reloading: Promise<unknown> = Promise.resolve();

  constructor(deps: { logger: Logger; metrics: GatewayMetrics }, target: () => AgentsTarget, watchFiles: boolean) {
    this.logger = deps.logger.child({ component: 'agents-file' });
    this.metrics = deps.metrics;
    this.target = target;
    this.watchFiles = watchFiles;
  }

  /** The agents file a config (re)load brought (undefined: the config names none); called at start and after each reload. */
  follow(loaded: LoadedAgents | undefined): void {
    this.appliedDigest = loaded?.digest;
    this.rejectedDigest = undefined;
    if (loaded?.file === this.file) return;
    this.watcher?.close();
    this.watcher = undefined;
    this.file = loaded?.file;
    if (this.file === undefined || !this.watchFiles) return;
    this.watcher = watchFile(
      this.file,
      () => {
        this.reloading = this.reloading.then(() => this.onFileChange());
        return this.reloading.then(() => undefined);
      },
      (err) => this.logger.error({ err: err.message }, 'agents file watching stopped; reload the config (SIGHUP) to apply agents file changes'),
    );
  }

  private async onFileChange(): Promise<void> {
    const file = this.file;
    if (file === undefined) return;
    const digest = await fileDigest(file);
    if (digest === undefined || digest === this.appliedDigest || digest === this.rejectedDigest) return;
    const target = this.target();
    try {
      const loaded = await loadAgentsFile(file, agentsCheckContext(target.config));
      if (target.authenticator) target.authenticator.registry = new AgentRegistry(loaded.agents);
      this.appliedDigest = loaded.digest;
      this.rejectedDigest = undefined;
      this.metrics.agentsReloads.inc({ result: 'success' });
      this.logger.info({ file, agents: loaded.agents.length }, 'agents file reloaded');
    } catch (err) {
      this.rejectedDigest = err instanceof ConfigError ? err.digest : digest;
      this.metrics.agentsReloads.inc({ result: 'error' });
      const problems = err instanceof ConfigError ? err.message.split('\n') : [(err as Error).message];
      this.logger.error({ file, problems }, 'agents file reload failed; the previous agents keep their keys');
    }
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}
