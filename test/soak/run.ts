// `npm run soak`: endurance and chaos (issue 7), loopback only, bounded in time and requests. Three phases:
//   soak    hours-like load on one gateway (rate limits + idempotency), 100k consumers, a fresh key per write:
//           RSS must plateau, the live heap must not grow between two snapshots, p99 must stay flat
//   stream  a 1 GiB download and a 1 GiB upload through a passthrough route: the gateway's RSS grows < 64 MiB
//   chaos   three replicas on one Redis while the upstream flaps, Redis restarts, the config reloads ten times and a
//           replica is SIGKILLed: 0 crashes, 0 malformed answers, 0 duplicated writes, 0 lost requests
// Prints a report, writes bench-results/soak-latest.json, exits 1 when any verdict fails (2: bad usage).
//
//   npm run soak                        everything at the scale (the soak alone takes 10+ minutes)
//   npm run soak -- --quick             everything in about a minute (figures are rough)
//   npm run soak -- --only chaos        some phases: soak, stream, chaos (comma-separated)
//   npm run soak -- --help              every option
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CLI, machineFacts, redisServerVersion, ROOT } from './common.ts';
import { chaosPreset, runChaos, type ChaosResult } from './chaos.ts';
import { formatChaos, formatSoak, formatStream } from './report.ts';
import { CRITERIA, runSoak, type SoakResult } from './soak.ts';
import { runStream, type StreamResult } from './stream.ts';

const PHASES = ['soak', 'stream', 'chaos'] as const;
type Phase = (typeof PHASES)[number];

const HELP = `Usage: npm run soak [-- options]

  --quick                 every phase small (about a minute in all): a smoke check, the figures are rough
  --only LIST             phases to run, comma-separated: soak,stream,chaos (default all)
  soak:
  --duration SECONDS      the soak lasts at least this long (default 600; quick 20)...
  --requests N            ...and sends at least this many requests (default 3000000; quick 0)...
  --max-duration SECONDS  ...but stops here whatever the count (default 2700; quick 60)
  --connections N         concurrent connections of the load generator (default 64; quick 16)
  --consumers N           distinct X-Agent-Id values (default 100000)
  --store memory|redis    the gateway's store (default memory; redis uses REDIS_URL, default redis://127.0.0.1:6379)
  --window SECONDS        p99 window (default 30; quick 2)
  --no-snapshots          skip the two heap snapshots
  stream:
  --stream-mib N          MiB downloaded and uploaded (default 1024; quick 128)
  --stream-limit-mib N    most the gateway's RSS may grow per transfer (default 64)
  chaos:
  --chaos-duration SECS   seconds of faults under load (default 120; quick 15)
  --chaos-concurrency N   concurrent agents (default 48; quick 24)
  other:
  --out FILE              JSON results (default bench-results/soak-latest.json)
  --keep                  keep the temp dirs (gateway logs, configs)`;

interface Options {
  quick: boolean;
  phases: Set<Phase>;
  duration: number;
  requests: number;
  maxDuration: number;
  connections: number;
  consumers: number;
  store: 'memory' | 'redis';
  window: number;
  snapshots: boolean;
  streamMib: number;
  streamLimitMib: number;
  chaosDuration: number;
  chaosConcurrency: number;
  out: string;
  keep: boolean;
}

function parseOptions(argv: string[]): Options {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${HELP}\n`);
      process.exit(0);
    }
    if (arg === '--quick' || arg === '--keep' || arg === '--no-snapshots') {
      flags.set(arg.slice(2), '1');
      continue;
    }
    const match = /^--(only|duration|requests|max-duration|connections|consumers|store|window|stream-mib|stream-limit-mib|chaos-duration|chaos-concurrency|out)(?:=(.*))?$/.exec(arg);
    if (!match) throw new Error(`unknown argument '${arg}' (see --help)`);
    const value = match[2] ?? argv[++i];
    if (value === undefined) throw new Error(`${arg} needs a value`);
    flags.set(match[1]!, value);
  }
  const quick = flags.has('quick');
  const number = (flag: string, full: number, small: number, min: number): number => {
    const raw = flags.get(flag);
    if (raw === undefined) return quick ? small : full;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min) throw new Error(`--${flag} must be a number ≥ ${min}, got '${raw}'`);
    return value;
  };
  const phases = new Set<Phase>();
  for (const name of (flags.get('only') ?? PHASES.join(',')).split(',')) {
    if (!(PHASES as readonly string[]).includes(name.trim())) throw new Error(`--only: unknown phase '${name}' (soak, stream, chaos)`);
    phases.add(name.trim() as Phase);
  }
  const store = flags.get('store') ?? 'memory';
  if (store !== 'memory' && store !== 'redis') throw new Error(`--store must be memory or redis, got '${store}'`);
  return {
    quick,
    phases,
    duration: number('duration', 600, 20, 1),
    requests: number('requests', 3_000_000, 0, 0),
    maxDuration: number('max-duration', 2700, 60, 1),
    connections: Math.round(number('connections', 64, 16, 1)),
    consumers: Math.round(number('consumers', 100_000, 100_000, 1)),
    store,
    window: number('window', 30, 2, 0.5),
    snapshots: !flags.has('no-snapshots'),
    streamMib: number('stream-mib', 1024, 128, 1),
    streamLimitMib: number('stream-limit-mib', 64, 64, 1),
    chaosDuration: number('chaos-duration', 120, 15, 3),
    chaosConcurrency: Math.round(number('chaos-concurrency', 48, 24, 2)),
    out: path.resolve(ROOT, flags.get('out') ?? 'bench-results/soak-latest.json'),
    keep: flags.has('keep'),
  };
}

function heading(text: string): void {
  console.log(`\n=== ${text} ${'='.repeat(Math.max(0, 100 - text.length))}`);
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`soak: ${(err as Error).message}\n`);
    return 2;
  }
  if (!existsSync(CLI)) {
    process.stderr.write(`soak: ${CLI} is missing: run 'sh scripts/setup.sh' first (npm run soak does it)\n`);
    return 2;
  }
  const redis = redisServerVersion();
  if (options.phases.has('chaos') && !redis) {
    process.stderr.write('soak: the chaos phase needs redis-server on PATH (it starts and kills its own); use --only soak,stream without it\n');
    return 2;
  }
  const machine = machineFacts(redis);
  const say = (line: string) => console.log(`  ${line}`);
  console.log(`agentgate endurance and chaos — ${String(machine.cpu_model)}, ${String(machine.cores)} cores, ${String(machine.memory_gib)} GiB, Node ${process.version}, ${new Date().toISOString()}${options.quick ? ' (quick: figures are rough)' : ''}`);

  // A first Ctrl-C lets the phase's finally blocks stop every child; the children also die with us (IPC, process group).
  process.on('SIGINT', () => {
    process.stderr.write('\nsoak: interrupted\n');
    process.exit(130);
  });

  const json: { date: string; machine: Record<string, unknown>; options: Record<string, unknown>; soak?: SoakResult; stream?: StreamResult; chaos?: ChaosResult } = {
    date: new Date().toISOString(),
    machine,
    options: { ...options, phases: [...options.phases] },
  };
  const verdicts: Record<string, boolean> = {};
  const write = () => {
    mkdirSync(path.dirname(options.out), { recursive: true });
    writeFileSync(options.out, `${JSON.stringify(json, null, 2)}\n`);
  };

  if (options.phases.has('soak')) {
    heading(
      `soak: ${options.store} store, ${options.connections} connections, ${options.consumers.toLocaleString('en-US')} consumers, ≥ ${options.duration} s and ≥ ${options.requests.toLocaleString('en-US')} requests (≤ ${options.maxDuration} s)`,
    );
    try {
      const result = await runSoak({
        durationSeconds: options.duration,
        requests: options.requests,
        maxDurationSeconds: options.maxDuration,
        connections: options.connections,
        consumers: options.consumers,
        store: options.store,
        redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
        windowSeconds: options.window,
        sampleSeconds: options.quick ? 1 : 5,
        snapshots: options.snapshots,
        gcSeconds: options.window,
        judgeTrends: !options.quick,
        logLevel: 'info',
        keep: options.keep,
        progress: say,
      });
      json.soak = result;
      verdicts.soak = result.ok;
      console.log(`\n${formatSoak(result)}`);
    } catch (err) {
      verdicts.soak = false;
      console.log(`FAIL the soak could not run: ${(err as Error).stack ?? String(err)}`);
    }
    write();
  }

  if (options.phases.has('stream')) {
    heading(`stream: ${options.streamMib} MiB down and ${options.streamMib} MiB up through a passthrough route`);
    try {
      const result = await runStream({ bytes: options.streamMib * 2 ** 20, limitMib: options.streamLimitMib, baseline: true, keep: options.keep, progress: say });
      json.stream = result;
      verdicts.stream = result.ok;
      console.log(`\n${formatStream(result)}`);
    } catch (err) {
      verdicts.stream = false;
      console.log(`FAIL the stream phase could not run: ${(err as Error).stack ?? String(err)}`);
    }
    write();
  }

  if (options.phases.has('chaos')) {
    const preset = chaosPreset(options.chaosDuration, options.chaosConcurrency, { keep: options.keep, progress: say });
    heading(`chaos: 3 replicas on one Redis, ${options.chaosDuration} s, ${options.chaosConcurrency} agents`);
    try {
      const result = await runChaos(preset);
      json.chaos = result;
      verdicts.chaos = result.ok;
      console.log(`\n${formatChaos(result)}`);
    } catch (err) {
      verdicts.chaos = false;
      console.log(`FAIL the chaos phase could not run: ${(err as Error).stack ?? String(err)}`);
    }
    write();
  }

  heading('summary');
  if (json.chaos) {
    const c = json.chaos;
    console.log(`chaos: crashes ${c.crashes}, malformed ${c.malformed}, duplicates ${c.duplicates}, lost ${c.lost} (in flight at the SIGKILL: ${c.in_flight_at_kill})`);
  }
  if (json.soak) console.log(`soak criteria:\n  ${Object.values(CRITERIA).join('\n  ')}`);
  for (const [phase, ok] of Object.entries(verdicts)) console.log(`${ok ? 'OK  ' : 'FAIL'} ${phase}`);
  console.log(`\nWritten: ${path.relative(process.cwd(), options.out) || options.out}`);
  return Object.values(verdicts).every(Boolean) ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
