// The Dockerfile as data, read with a real parser (dockerfile-ast): stages, their steps, and the final image's config.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Copy, DockerfileParser, From, Healthcheck, JSONInstruction, Label, Env, Arg, type Instruction } from 'dockerfile-ast';

export const REPO = path.resolve(import.meta.dirname, '../../..');
export const DOCKERFILE = path.join(REPO, 'Dockerfile');
export const DOCKERIGNORE = path.join(REPO, '.dockerignore');

export interface Step {
  keyword: string;
  /** 1-based line of the instruction, for messages. */
  line: number;
  /** The instruction itself: its flags (`--from=build`) without the leading dashes. */
  flags: Record<string, string | null>;
  /** Shell-form text after the flags (variables not expanded). */
  text: string;
  /** Exec-form (JSON array) arguments, when the instruction is written that way. */
  json: string[] | undefined;
  /** Whitespace-separated arguments (quotes kept as written). */
  args: string[];
  /** ENV, LABEL and ARG name/value pairs, quotes removed. */
  properties: [string, string | null][];
  instruction: Instruction;
}

export interface Stage {
  index: number;
  name: string;
  /** The base image with build arguments resolved. */
  base: string;
  steps: Step[];
}

export interface ImageConfig {
  workdir: string;
  env: Record<string, string>;
  user: string | undefined;
  cmd: string[] | undefined;
  entrypoint: string[] | undefined;
  /** Exec-form HEALTHCHECK CMD and its flags. */
  healthcheck: { cmd: string[]; flags: Record<string, string | null> } | undefined;
  exposed: string[];
  labels: Record<string, string>;
  stopSignal: string | undefined;
}

export interface ParsedDockerfile {
  text: string;
  /** ARG defaults declared before the first FROM. */
  globalArgs: Record<string, string>;
  stages: Stage[];
  final: Stage;
  config: ImageConfig;
}

/** `${NAME}` and `$NAME` replaced from `vars`; an unknown one is an error (the test must not guess). */
export function expand(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b)!;
    const v = vars[name];
    if (v === undefined) throw new Error(`Dockerfile: \${${name}} has no value`);
    return v;
  });
}

function toStep(instruction: Instruction): Step {
  const flags: Record<string, string | null> = {};
  const withFlags = instruction as Instruction & { getFlags?: () => { getName(): string; getValue(): string | null }[] };
  for (const flag of withFlags.getFlags?.() ?? []) flags[flag.getName()] = flag.getValue();
  const json = instruction instanceof JSONInstruction && instruction.getJSONStrings().length > 0 ? instruction.getJSONStrings().map((s) => s.getJSONValue()) : undefined;
  const properties: [string, string | null][] =
    instruction instanceof Env || instruction instanceof Label
      ? instruction.getProperties().map((p) => [p.getName(), p.getValue()])
      : instruction instanceof Arg && instruction.getProperty()
        ? [[instruction.getProperty()!.getName(), instruction.getProperty()!.getValue()]]
        : [];
  return {
    keyword: instruction.getKeyword(),
    line: instruction.getRange().start.line + 1,
    flags,
    text: instruction.getRawArgumentsContent() ?? '',
    json,
    args: instruction.getArguments().map((a) => a.getValue()),
    properties,
    instruction,
  };
}

export function parseDockerfile(text = readFileSync(DOCKERFILE, 'utf8')): ParsedDockerfile {
  const dockerfile = DockerfileParser.parse(text);
  const globalArgs: Record<string, string> = {};
  for (const arg of dockerfile.getInitialARGs()) {
    const p = arg.getProperty();
    if (p) globalArgs[p.getName()] = p.getValue() ?? '';
  }
  const stages: Stage[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction instanceof From) {
      const image = instruction.getImage() ?? '';
      stages.push({ index: stages.length, name: instruction.getBuildStage() ?? String(stages.length), base: expand(image, globalArgs), steps: [] });
    } else if (stages.length > 0) stages[stages.length - 1]!.steps.push(toStep(instruction));
  }
  if (stages.length === 0) throw new Error('Dockerfile: no FROM');
  const final = stages[stages.length - 1]!;
  return { text, globalArgs, stages, final, config: imageConfig(final, globalArgs) };
}

/** What `docker inspect` would show for the image the stage builds. */
export function imageConfig(stage: Stage, globalArgs: Record<string, string>): ImageConfig {
  const config: ImageConfig = { workdir: '/', env: {}, user: undefined, cmd: undefined, entrypoint: undefined, healthcheck: undefined, exposed: [], labels: {}, stopSignal: undefined };
  const args: Record<string, string> = {};
  for (const step of stage.steps) {
    switch (step.keyword) {
      case 'ARG':
        for (const [name, value] of step.properties) args[name] = value ?? globalArgs[name] ?? '';
        break;
      case 'WORKDIR':
        config.workdir = path.posix.resolve(config.workdir, expand(step.args.join(' '), { ...args, ...config.env }));
        break;
      case 'ENV':
        for (const [name, value] of step.properties) config.env[name] = expand(value ?? '', { ...args, ...config.env });
        break;
      case 'LABEL':
        for (const [name, value] of step.properties) config.labels[name] = expand(value ?? '', { ...args, ...config.env });
        break;
      case 'USER':
        config.user = step.args.join(' ');
        break;
      case 'CMD':
        config.cmd = step.json ?? ['/bin/sh', '-c', step.text];
        break;
      case 'ENTRYPOINT':
        config.entrypoint = step.json ?? ['/bin/sh', '-c', step.text];
        config.cmd = undefined; // Docker resets an inherited CMD when ENTRYPOINT is set
        break;
      case 'EXPOSE':
        config.exposed.push(...step.args);
        break;
      case 'STOPSIGNAL':
        config.stopSignal = step.args[0];
        break;
      case 'HEALTHCHECK': {
        const hc = step.instruction as Healthcheck;
        const sub = hc.getSubcommand()?.getValue().toUpperCase();
        if (sub !== 'CMD') throw new Error(`Dockerfile:${step.line}: HEALTHCHECK ${sub ?? ''} is not supported here`);
        const rest = step.text.replace(/^\s*CMD\s*/i, '');
        let cmd: unknown;
        try {
          cmd = JSON.parse(rest);
        } catch {
          cmd = ['/bin/sh', '-c', rest];
        }
        config.healthcheck = { cmd: cmd as string[], flags: step.flags };
        break;
      }
      default:
        break;
    }
  }
  return config;
}

export interface CopyStep {
  from: string | undefined;
  sources: string[];
  dest: string;
  step: Step;
}

export function copyOf(step: Step): CopyStep {
  if (!(step.instruction instanceof Copy)) throw new Error(`Dockerfile:${step.line}: not a COPY`);
  const parts = step.json ?? step.args;
  if (parts.length < 2) throw new Error(`Dockerfile:${step.line}: COPY needs a source and a destination`);
  return { from: step.flags.from ?? undefined, sources: parts.slice(0, -1), dest: parts[parts.length - 1]!, step };
}

/** The build context's .dockerignore, with Docker's own matching rules (@balena/dockerignore). */
export function dockerignore(text = readFileSync(DOCKERIGNORE, 'utf8')): { ignores(relativePath: string): boolean; patterns: string[] } {
  // CommonJS `module.exports = factory`, which its type declarations describe as a default export.
  const ignore = createRequire(import.meta.url)('@balena/dockerignore') as typeof import('@balena/dockerignore').default;
  const patterns = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const ig = ignore().add(patterns);
  return { ignores: (p) => ig.ignores(p.split(path.sep).join('/')), patterns };
}
