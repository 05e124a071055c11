// Reads a YAML config file into a validated Config, or throws a ConfigError naming file, line and key path of every problem.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { CST, isMap, isPair, isScalar, isSeq, Lexer, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { ConfigSchema, type Config } from './schema.ts';
import { isDuration, isSize, parseListenAddress } from './units.ts';
import { CONFIG_CHECKS } from './checks.ts';
import { closest, quote, type CheckProblem, type KeyPath, type ResponseSchemas } from './schema-helpers.ts';
import { KEY_IN_TEXT_PATTERN } from '../agents/keys.ts';
import { agentsFileProblems, AgentsFileSchema, type AgentEntry, type AgentsCheckContext, type AgentsFile } from '../agents/schema.ts';
import { readLegacySpec, type LegacySpec } from '../agent-contract/spec.ts';

export { headerValueProblem } from './checks.ts';

/**
 * Config files larger than this are refused before parsing. A real config is a few kilobytes; a thousand routes of five
 * settings and a comment each are about 270 KB, so this leaves room for about two thousand. Parsing costs memory per
 * YAML node: a file of nothing but tiny nodes (`[1,1,1,...]`) peaked at 590 MB more than an idle process at 1 MiB,
 * 365 MB at 512 KiB.
 */
export const MAX_CONFIG_BYTES = 512 * 1024;
/** YAML aliases expanded at most this often, so a "billion laughs" file cannot exhaust memory. */
const MAX_ALIAS_COUNT = 100;
/**
 * Deepest nesting of mappings and lists refused before the YAML parser runs: a real config is never more than about
 * ten levels deep, and the parser costs memory and stack per level (400 KB of `[[[[...` took 430 MB to refuse).
 */
export const MAX_NESTING_DEPTH = 64;
/**
 * Values substituted for ${NAME} shorter than this are not scrubbed from problem messages that concern other keys: too
 * short to be secrets, and common enough (`1`, `10s`) to garble messages. Where such a value is itself the problem, it
 * is hidden whatever its length.
 */
const MIN_SCRUBBED_CHARS = 4;

export interface ConfigProblem {
  file: string;
  /** 1-based; 0 when the problem concerns the whole file. */
  line: number;
  column: number;
  /** Where in the document, e.g. routes[2].upstream; empty for the whole file. */
  keyPath: string;
  message: string;
}

export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  /** Hash of the file content that was found invalid; absent when the file could not be read. */
  digest: string | undefined;
  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function formatProblem(p: ConfigProblem): string {
  const where = p.line > 0 ? `${p.file}:${p.line}:${p.column}` : p.file;
  return p.keyPath ? `${where}: ${p.keyPath}: ${p.message}` : `${where}: ${p.message}`;
}

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file it came from; relative paths inside the config are resolved against its folder. */
  file: string;
  /** Hash of the file's bytes, to tell a real change from a watcher's spurious event. */
  digest: string;
  /**
   * The response_schema files the config names, compiled while it was checked, by absolute path: the runtime takes
   * them from here, so a load or reload reads each file once. Absent for a config not loaded from a file (the runtime
   * then compiles them itself).
   */
  responseSchemas?: ResponseSchemas;
  /** The agents file consumers.authenticate.api_keys names, loaded and checked with the config. */
  agents?: LoadedAgents;
  /**
   * The legacy API's OpenAPI document openapi.spec names, read, checked and dereferenced with the config, so a load or
   * reload reads it once. Absent without openapi.spec, and for a config not loaded from a file (the OpenAPI document
   * is then made from the routes alone).
   */
  openapi?: LegacySpec;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, verbose: true, strict: true, allowUnionTypes: true });
ajv.addFormat('duration', isDuration);
ajv.addFormat('size', isSize);
ajv.addFormat('listen-address', (text: string) => parseListenAddress(text) !== undefined);
const validateSchema = ajv.compile<Config>(ConfigSchema);

export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  const { text, digest, absolute } = await readBounded(file, MAX_CONFIG_BYTES, 'a config');
  try {
    const { config, responseSchemas } = parse(text, file, env);
    const agentsFile = config.consumers.authenticate?.api_keys?.file;
    // Checked with the config (its overrides name the config's policies), so `validate` and a reload judge both.
    const agents = agentsFile === undefined ? undefined : await loadAgentsFile(path.resolve(path.dirname(absolute), agentsFile), agentsCheckContext(config), env);
    const openapi = config.openapi && (await loadSpec(path.resolve(path.dirname(absolute), config.openapi.spec)));
    return { config, file: absolute, digest, responseSchemas, agents, openapi };
  } catch (err) {
    if (err instanceof ConfigError) err.digest = digest;
    throw err;
  }
}

/** openapi.spec: its problems are the config's, each at its JSON Pointer in the spec's file. */
async function loadSpec(file: string): Promise<LegacySpec> {
  const reading = await readLegacySpec(file);
  if (reading.kind === 'loaded') return reading.spec;
  throw new ConfigError(reading.problems.map(({ pointer, message }) => ({ file, line: 0, column: 0, keyPath: pointer, message })));
}

/** A file's text and the digest of its bytes; a file larger than `max` is refused unread. */
async function readBounded(file: string, max: number, what: string): Promise<{ text: string; digest: string; absolute: string }> {
  const absolute = path.resolve(file);
  let bytes: Buffer;
  try {
    bytes = await readFile(absolute);
  } catch (err) {
    throw new ConfigError([{ file, line: 0, column: 0, keyPath: '', message: `cannot read the file: ${(err as Error).message}` }]);
  }
  if (bytes.length > max) throw new ConfigError([{ file, line: 0, column: 0, keyPath: '', message: `the file is ${bytes.length} bytes; ${what} may be at most ${max}` }]);
  return { text: bytes.toString('utf8'), digest: createHash('sha256').update(bytes).digest('hex'), absolute };
}

/** Parses and validates config text; `file` is only used in problem reports (and to resolve response_schema paths). */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  return parse(text, file, env).config;
}

/** parseConfig, and the response schemas its checks compiled. */
function parse(text: string, file: string, env: NodeJS.ProcessEnv): { config: Config; responseSchemas: ResponseSchemas } {
  const context = { configDir: path.dirname(path.resolve(file)), responseSchemas: new Map() };
  const config = parseChecked(text, file, env, {
    validate: validateSchema,
    // Rules across fields, each section's and each policy's (config/checks.ts lists them), on the data ajv left.
    check: (data) => CONFIG_CHECKS.flatMap((check) => check(data, context)),
    empty: 'the file is empty; a config needs at least version, upstreams and routes',
    notAMapping: 'the top level must be a mapping of keys (version, upstreams, routes, ...)',
  });
  return { config, responseSchemas: context.responseSchemas };
}

/** How one kind of YAML file is checked: its schema, its rules across fields, and what to say when it has no content. */
interface DocumentRules<T> {
  readonly validate: ValidateFunction<T>;
  readonly check: (data: Record<string, unknown>) => CheckProblem[];
  readonly empty: string;
  readonly notAMapping: string;
}

/** Parses YAML text and checks it by `rules`; every problem, with file, line, column and key path, in one ConfigError. */
function parseChecked<T>(text: string, file: string, env: NodeJS.ProcessEnv, rules: DocumentRules<T>): T {
  const tooDeep = tooDeeplyNested(text);
  if (tooDeep !== undefined) {
    const before = text.slice(0, tooDeep);
    const line = before.split('\n').length;
    const problem = { file, line, column: tooDeep - before.lastIndexOf('\n'), keyPath: '' };
    throw new ConfigError([{ ...problem, message: `nested more than ${MAX_NESTING_DEPTH} levels deep; a config needs about 10` }]);
  }
  const lineCounter = new LineCounter();
  // Duplicate keys are found below in one pass: yaml's uniqueKeys compares every key with every other (quadratic: a
  // mapping of 100,000 keys took 98 s).
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: false });
  const at = (offset: number | undefined, keyPath: string, message: string): ConfigProblem => {
    const pos = offset === undefined ? { line: 0, col: 0 } : lineCounter.linePos(offset);
    return { file, line: pos.line, column: pos.col, keyPath, message };
  };

  if (doc.errors.length > 0) {
    // Later YAML errors are almost always knock-on effects of the first; one precise message beats forty.
    const first = doc.errors[0]!;
    const line = text.split('\n')[lineCounter.linePos(first.pos[0]).line - 1] ?? '';
    const hint = /\{[^}]*\{/.test(line) ? " (inside {...} flow mappings, quote values that contain { } [ ] or , e.g. path: '/orders/{id}')" : '';
    throw new ConfigError([at(first.pos[0], '', `not valid YAML: ${firstLine(first.message)}${hint}`)]);
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    throw new ConfigError([at(undefined, '', rules.empty)]);
  }

  const duplicates = duplicateKeyProblems(doc, at);
  if (duplicates.length > 0) throw new ConfigError(duplicates);

  // From here on a problem message could quote a value that came from the environment, often a secret: every
  // problem leaves through fail(), which scrubs each inserted value (in every form a message could carry) to ${NAME}.
  const { problems: envProblems, redaction } = substituteEnv(doc, env, at);
  const fail = (problems: ConfigProblem[]): never => {
    throw new ConfigError(
      problems.map((p) => ({
        ...p,
        keyPath: p.keyPath.replace(AGENT_KEY_IN_TEXT, REDACTED_AGENT_KEY),
        message: redaction.scrub(p.message, p.keyPath).replace(AGENT_KEY_IN_TEXT, REDACTED_AGENT_KEY),
      })),
    );
  };
  if (envProblems.length > 0) fail(envProblems);

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    fail([at(undefined, '', `cannot expand the YAML: ${(err as Error).message}`)]);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    fail([at(doc.contents.range?.[0], '', rules.notAMapping)]);
  }

  // Schema and cross-reference problems are reported together, so a file is fixed in one round, not two.
  const valid = rules.validate(data);
  const problems = valid ? [] : schemaProblems(rules.validate.errors ?? [], doc, at, redaction);
  const reported = new Set(problems.map((p) => p.keyPath));
  for (const { keyPath, message } of rules.check(data as Record<string, unknown>)) {
    const formatted = formatKeyPath(keyPath);
    if (!reported.has(formatted)) problems.push(at(offsetOf(doc, keyPath), formatted, message));
  }
  if (problems.length > 0) fail(problems);
  return data as T;
}

/** An agent key pasted where its hash belongs (or anywhere else) is a secret: never quoted back in a problem. */
const AGENT_KEY_IN_TEXT = new RegExp(KEY_IN_TEXT_PATTERN, 'g');
const REDACTED_AGENT_KEY = 'agk_<redacted: a key, not its hash; see agentgate keys new>';

/** An agents file as loaded: its agents, checked against the gateway config in force, and the digest of its bytes. */
export interface LoadedAgents {
  readonly agents: AgentEntry[];
  /** Absolute path. */
  readonly file: string;
  readonly digest: string;
}

/** The agents file is larger than a config: an entry per agent, a few hundred bytes each. */
export const MAX_AGENTS_FILE_BYTES = 4 * 1024 * 1024;
const validateAgentsFile = ajv.compile<AgentsFile>(AgentsFileSchema);

/** Reads and checks the agents file that consumers.authenticate.api_keys names; problems are reported as a config's are. */
export async function loadAgentsFile(file: string, context: AgentsCheckContext, env: NodeJS.ProcessEnv = process.env): Promise<LoadedAgents> {
  const { text, digest, absolute } = await readBounded(file, MAX_AGENTS_FILE_BYTES, 'an agents file');
  try {
    const parsed = parseChecked(text, file, env, {
      validate: validateAgentsFile,
      check: (data) => agentsFileProblems(data, context),
      empty: "the file is empty; an agents file needs 'agents:', a list (it may be empty: [])",
      notAMapping: "the top level must be a mapping with 'agents:', a list of agents",
    });
    return { agents: parsed.agents, file: absolute, digest };
  } catch (err) {
    if (err instanceof ConfigError) err.digest = digest;
    throw err;
  }
}

/** What the agents file is checked against, from a config. */
export function agentsCheckContext(config: Config): AgentsCheckContext {
  return { policies: new Map(Object.entries(config.rate_limits).map(([name, p]) => [name, { scope: p.scope, per: p.per }])) };
}

/**
 * Where `text` first nests deeper than MAX_NESTING_DEPTH (an offset), found with yaml's lexer alone, which streams
 * tokens in constant memory; the parser's cost is what is being avoided. Depth counts block levels (a stack of the
 * columns where nodes start: deeper indentation, and a node after `- `, `? ` or `: ` on the same line) plus open flow
 * collections (`[`, `{`). It may count one level more than the document has (a scalar after `key: `) or half as many
 * (lists at their parent key's indentation), which matters neither way next to a real config's ten.
 */
function tooDeeplyNested(text: string): number | undefined {
  const columns: number[] = [];
  let flow = 0;
  let offset = 0;
  let lineStart = 0;
  let atLineStart = true;
  let afterIndicator = false;
  let scalarNext = false;
  for (const source of new Lexer().lex(text)) {
    // Control tokens the lexer adds (document mode, end of a broken flow collection, scalar follows) take no source.
    if (source === '\x02' || source === '\x18') continue;
    if (source === '\x1f') {
      scalarNext = true;
      continue;
    }
    const start = offset;
    offset += source.length;
    // A scalar's source can look like any token, e.g. a block scalar's indented lines like space.
    const type = scalarNext ? 'scalar' : CST.tokenType(source);
    scalarNext = false;
    const lastNewline = source.lastIndexOf('\n');
    if (type === 'newline') {
      lineStart = offset;
      atLineStart = true;
      afterIndicator = false;
      continue;
    }
    if (type === 'space' || type === 'comment' || type === 'byte-order-mark' || type === 'directive-line') continue;
    if (type === 'doc-start' || type === 'doc-end') {
      columns.length = 0;
      flow = 0;
      afterIndicator = true;
    } else {
      const column = start - lineStart;
      if (flow === 0 && atLineStart) {
        while (columns.length > 0 && columns[columns.length - 1]! > column) columns.pop();
        if (columns[columns.length - 1] !== column) columns.push(column);
      } else if (flow === 0 && afterIndicator) {
        columns.push(column);
      }
      afterIndicator = flow === 0 && (type === 'seq-item-ind' || type === 'explicit-key-ind' || type === 'map-value-ind');
      if (type === 'flow-seq-start' || type === 'flow-map-start') flow++;
      else if ((type === 'flow-seq-end' || type === 'flow-map-end') && flow > 0) flow--;
      if (columns.length + flow > MAX_NESTING_DEPTH) return start;
    }
    atLineStart = false;
    // A token spanning lines (a multi-line scalar) ends on a later line: columns count from there.
    if (lastNewline !== -1) {
      lineStart = start + lastNewline + 1;
      atLineStart = lastNewline === source.length - 1;
    }
  }
  return undefined;
}

/** Keys given twice in one mapping (YAML forbids it; which one would win is anyone's guess). Linear in the keys. */
function duplicateKeyProblems(doc: Document, at: At): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  visit(doc, {
    Map(_key, map, ancestors) {
      const first = new Map<string, number | undefined>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        const name = String(pair.key.value);
        const offset = pair.key.range?.[0];
        if (!first.has(name)) {
          first.set(name, offset);
          continue;
        }
        const firstOffset = first.get(name);
        const where = firstOffset === undefined ? '' : ` (first on line ${at(firstOffset, '', '').line})`;
        problems.push(at(offset, formatKeyPath([...pathOf([...ancestors, map]), name]), `duplicate key ${describe(name)}${where}: give each key once`));
      }
    },
  });
  return problems;
}

type At = (offset: number | undefined, keyPath: string, message: string) => ConfigProblem;

/**
 * Replaces ${NAME} in every string value; `$${` stands for a literal `${`. A missing variable is an error, never ''.
 * Returns what it inserted where, so that no problem message can print a value that came from the environment.
 */
function substituteEnv(doc: Document, env: NodeJS.ProcessEnv, at: At): { problems: ConfigProblem[]; redaction: Redaction } {
  const problems: ConfigProblem[] = [];
  const redaction = new Redaction();
  visit(doc, {
    Scalar(key, node, ancestors) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('${')) return;
      const keyPath = pathOf([...ancestors, node]);
      node.value = node.value.replace(/\$?\$\{([^}]*)\}/g, (whole: string, name: string) => {
        if (whole.startsWith('$$')) return whole.slice(1);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
          problems.push(at(node.range?.[0], formatKeyPath(keyPath), `'${whole}' is not a valid variable reference; use \${NAME} with letters, digits and _`));
          return whole;
        }
        const value = env[name];
        if (value === undefined) {
          problems.push(at(node.range?.[0], formatKeyPath(keyPath), `environment variable ${name} is not set`));
          return whole;
        }
        redaction.record(keyPath, name, value);
        return value;
      });
    },
  });
  return { problems, redaction };
}

/**
 * The values substituteEnv inserted (secrets, often: a Redis password, an upstream's token) and the keys they went to.
 * A problem at such a key says "the value from ${NAME} (not shown)" instead of quoting it, and every problem message
 * is scrubbed of every inserted value before it leaves parseConfig, in each form a message could carry it: as is,
 * JSON-escaped (as describe() quotes) and URL-encoded.
 */
class Redaction {
  /** Substituted scalars by key path (both as formatKeyPath writes a path from the document and from a JSON pointer). */
  private readonly byPath = new Map<string, { names: string[]; values: string[] }>();
  /** Each inserted value, with the variable it came from. */
  private readonly inserted = new Map<string, string>();
  private pattern: RegExp | undefined;
  private readonly replacements = new Map<string, string>();

  record(keyPath: KeyPath, name: string, value: string): void {
    const numbered = keyPath.map((k) => (typeof k === 'string' && /^\d+$/.test(k) ? Number(k) : k));
    const entry = this.byPath.get(formatKeyPath(keyPath)) ?? { names: [], values: [] };
    if (!entry.names.includes(name)) entry.names.push(name);
    if (value !== '') entry.values.push(value);
    this.byPath.set(formatKeyPath(keyPath), entry);
    this.byPath.set(formatKeyPath(numbered), entry);
    if (value !== '' && !this.inserted.has(value)) this.inserted.set(value, name);
    this.pattern = undefined;
  }

  /** What a message shows instead of a substituted scalar's value; undefined for a value written in the file. */
  hidden(keyPath: string): string | undefined {
    const entry = this.byPath.get(keyPath);
    return entry && `the value from ${entry.names.map((n) => `\${${n}}`).join(', ')} (not shown)`;
  }

  /** `text` with every inserted value replaced by its ${NAME}: values of any length at `keyPath`, long enough ones anywhere. */
  scrub(text: string, keyPath: string): string {
    const here = this.byPath.get(keyPath);
    if (here) {
      const name = here.names.length === 1 ? here.names[0]! : undefined;
      for (const value of [...here.values].sort((a, b) => b.length - a.length)) {
        const variable = `\${${name ?? this.inserted.get(value)!}}`;
        for (const form of encodings(value)) text = text.split(form).join(variable);
      }
    }
    if (this.inserted.size === 0) return text;
    if (!this.pattern) {
      this.replacements.clear();
      for (const [value, name] of this.inserted) {
        if (value.length < MIN_SCRUBBED_CHARS) continue;
        for (const form of encodings(value)) if (!this.replacements.has(form)) this.replacements.set(form, `\${${name}}`);
      }
      const forms = [...this.replacements.keys()].sort((a, b) => b.length - a.length);
      this.pattern = forms.length ? new RegExp(forms.map((f) => f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g') : /(?!)/g;
    }
    return text.replace(this.pattern, (form) => this.replacements.get(form)!);
  }
}

/** The forms a value can take in a message: as is, JSON-escaped (without the quotes), URL-encoded. */
function encodings(value: string): string[] {
  const json = JSON.stringify(value).slice(1, -1);
  return [...new Set([value, json, json.replace(/\\"/g, '"'), encodeURIComponent(value), encodeURI(value)])].filter((f) => f.length > 0);
}

/** The key path of a node, given the chain of its ancestors (as yaml's visit() passes them) followed by the node. */
function pathOf(chain: readonly unknown[]): KeyPath {
  const keys: KeyPath = [];
  for (let i = 0; i < chain.length; i++) {
    const node = chain[i];
    if (isPair(node) && isScalar(node.key)) keys.push(String(node.key.value));
    else if (isSeq(node) && i + 1 < chain.length) keys.push(node.items.indexOf(chain[i + 1] as never));
  }
  return keys;
}

function schemaProblems(errors: ErrorObject[], doc: Document, at: At, redaction: Redaction): ConfigProblem[] {
  // A union (anyOf) fails with one error per branch; report the union once, in words.
  const unionPaths = errors.filter((e) => e.keyword === 'anyOf').map((e) => e.schemaPath);
  // A union that also lists its types (boolean or object, with properties for the object) says it better than the type list.
  const unionValues = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const relevant = errors.filter(
    (e) =>
      e.keyword === 'anyOf' ||
      (!unionPaths.some((p) => e.schemaPath.startsWith(p + '/')) && !(e.keyword === 'type' && unionValues.has(e.instancePath))),
  );
  const seen = new Set<string>();
  const problems: ConfigProblem[] = [];
  for (const e of relevant) {
    const keyPath = pointerToKeyPath(e.instancePath);
    let target = keyPath;
    let message: string;
    // The value in question, unless it came from the environment (scrubbed before describe() shortens it).
    // A secret (writeOnly in the schema: a token, a signing key, an injected credential) is never quoted, even when
    // written in the file itself.
    const secret = (e.parentSchema as { writeOnly?: boolean } | undefined)?.writeOnly === true;
    const got = () =>
      redaction.hidden(formatKeyPath(keyPath)) ??
      (secret ? 'a value that is not shown (a secret)' : describe(typeof e.data === 'string' ? redaction.scrub(e.data, formatKeyPath(keyPath)) : e.data));
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = String(e.params.additionalProperty);
        target = [...keyPath, key];
        const known = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
        const near = closest(key, known);
        message = `unknown key '${key}'` + (near ? ` (did you mean '${near}'?)` : known.length ? ` (allowed: ${known.join(', ')})` : '');
        break;
      }
      case 'required':
        message = `missing required key '${String(e.params.missingProperty)}'`;
        break;
      case 'type':
        message = `must be ${article(String(e.params.type))}, got ${got()}`;
        break;
      case 'format':
        message = `${formatHelp(String(e.params.format))}, got ${got()}`;
        break;
      case 'const':
        message = `must be ${JSON.stringify(e.params.allowedValue)}, got ${got()}`;
        break;
      case 'anyOf': {
        const branches = (e.schema as { const?: unknown }[]) ?? [];
        const constants = branches.every((b) => 'const' in b) ? branches.map((b) => String(b.const)) : [];
        message = constants.length
          ? `must be one of ${constants.join(', ')}, got ${got()}`
          : `${(e.parentSchema as { description?: string }).description ?? 'does not match any allowed form'}, got ${got()}`;
        break;
      }
      case 'minProperties':
      case 'maxProperties':
        message = (e.parentSchema as { description?: string }).description
          ? `must be ${(e.parentSchema as { description: string }).description}`
          : `must have ${e.keyword === 'minProperties' ? 'at least' : 'at most'} ${String(e.params.limit)} keys`;
        break;
      case 'pattern':
        message = `${got()} is not allowed here: must match ${String(e.params.pattern)}` +
          ((e.parentSchema as { description?: string }).description ? ` (${(e.parentSchema as { description: string }).description})` : '');
        break;
      default:
        message = `${e.message ?? 'is invalid'}${e.data !== undefined && typeof e.data !== 'object' ? `, got ${got()}` : ''}`;
    }
    const problem = at(offsetOf(doc, target), formatKeyPath(target), message);
    const id = `${problem.keyPath}\u0000${problem.message}`;
    if (!seen.has(id)) {
      seen.add(id);
      problems.push(problem);
    }
  }
  return problems;
}

function pointerToKeyPath(pointer: string): KeyPath {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

export function formatKeyPath(keyPath: KeyPath): string {
  let out = '';
  for (const k of keyPath) out += typeof k === 'number' ? `[${k}]` : out === '' ? k : `.${k}`;
  return out;
}

/** Source offset of the deepest existing node on the path (the key itself for a map entry). */
function offsetOf(doc: Document, keyPath: KeyPath): number | undefined {
  for (let depth = keyPath.length; depth >= 0; depth--) {
    const parentPath = keyPath.slice(0, Math.max(0, depth - 1));
    const parent = depth === 0 ? doc.contents : (doc.getIn(parentPath, true) as Node | undefined);
    if (depth === 0) return (parent as Node | null)?.range?.[0];
    const last = keyPath[depth - 1];
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === String(last));
      if (pair && isScalar(pair.key)) return pair.key.range?.[0];
    } else if (parent && typeof last === 'number') {
      const node = doc.getIn(keyPath.slice(0, depth), true) as Node | undefined;
      if (node?.range) return node.range[0];
    }
  }
  return undefined;
}

function formatHelp(format: string): string {
  switch (format) {
    case 'duration':
      return 'must be a duration with a unit such as 250ms, 10s, 5m, 24h';
    case 'size':
      return 'must be a size with a unit such as 512b, 64kb, 1mb';
    case 'listen-address':
      return 'must be host:port, e.g. 0.0.0.0:8080 or [::1]:8080';
    default:
      return `must be a valid ${format}`;
  }
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  // Shortened: a value from the environment must be scrubbed before it gets here (see schemaProblems), not after.
  if (typeof value === 'string') return quote(value.length > 60 ? value.slice(0, 57) + '...' : value);
  return `${typeof value} ${String(value)}`;
}

function article(type: string): string {
  const names: Record<string, string> = { object: 'a mapping', array: 'a list', string: 'a string', integer: 'an integer', number: 'a number', boolean: 'true or false' };
  return type.split(',').map((t) => names[t] ?? t).join(' or ');
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}
