#!/usr/bin/env node
/**
 * The m2fleet command line. Flags read like uWSGI's; a bad flag or value
 * names the problem and exits with status 2. `m2fleet [options]` runs the
 * fleet; `reload`, `stop` and `status` talk to a running one; `check`
 * validates a config file, or asks a running fleet whether it is ready.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { M2FleetError } from '../handler/errors.js';
import type { Logger } from '../handler/types.js';
import { addServeOptions, flagsOf } from './cli-options.js';
import {
  buildConfig, clusterKeyFromEnvironment, fromEnvironment, type FleetConfig,
} from './config.js';
import { ConfigFileError, parseIni, parseJsonConfig, readConfigFile } from './config-file.js';
import { createLogger } from './log.js';
import { createSinks } from './log-sinks.js';
import { startStatsServer } from './stats-server.js';
import { fetchStatus, formatClusterTable, formatStatusTable } from './status-table.js';
import { generateGroupKeyLine, generateSigningKeyPair } from '../cluster/keys.js';
import { applySchedPolicy } from './sched.js';
import { startMaster, type Master } from './supervisor.js';
import { loadKeyring, startClusterNode, type ClusterNode } from './cluster-node.js';
import type { FleetSnapshot } from './snapshot.js';

function fail(message: string): never {
  process.stderr.write(`m2fleet: ${message}\n`);
  process.exit(2);
}

function signalMaster(pidfile: string, signal: NodeJS.Signals): void {
  let pid: number;
  try {
    pid = Number(readFileSync(pidfile, 'utf8').trim());
  } catch {
    fail(`cannot read pidfile ${pidfile}`);
  }
  if (!Number.isSafeInteger(pid) || pid <= 1) fail(`pidfile ${pidfile} holds no pid`);
  try {
    process.kill(pid, signal);
  } catch {
    fail(`no m2fleet master with pid ${pid} (from ${pidfile})`);
  }
  process.stdout.write(`sent ${signal} to m2fleet master ${pid}\n`);
}

// Settings a running master cannot change: they take effect at the next
// start (sockets are bound once; stats, pidfile and logging belong to the
// master; cluster settings to its member).
const RESTART_ONLY = [
  'sockets', 'chmodSocket', 'stats', 'pidfile', 'logger', 'log', 'cluster', 'schedPolicy',
] as const;

/**
 * What SIGHUP rolls the fleet onto: the configuration read again (file,
 * environment, flags). A file with an error keeps the running one.
 */
function reloadedConfig(running: FleetConfig, reread: () => FleetConfig, log: Logger): FleetConfig | null {
  let next: FleetConfig;
  try {
    next = reread();
  } catch (err) {
    log.error({ err: (err as Error).message }, 'reload: the configuration has an error; keeping the running one');
    return null;
  }
  const fixed = RESTART_ONLY.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(running[k]));
  if (fixed.length > 0) log.warn({ keys: fixed }, 'reload: these settings change at the next restart only');
  const kept = Object.fromEntries(RESTART_ONLY.map((k) => [k, running[k]]));
  const merged = Object.freeze({ ...next, ...kept }) as FleetConfig;
  return JSON.stringify(merged) === JSON.stringify(running) ? null : merged;
}

async function runFleet(config: FleetConfig, reread?: () => FleetConfig): Promise<void> {
  const sinks = createSinks(config);
  const log = createLogger({ ...config.log, sink: sinks.write }).child({ component: 'master' });
  // Before any worker or ZeroMQ thread exists: they inherit it.
  applySchedPolicy(config.schedPolicy, log);
  let master: Master | null = null;
  let cluster: ClusterNode | null = null;
  const exit = (code: number): void => {
    void (cluster?.stop() ?? master?.stop() ?? Promise.resolve()).then(async () => {
      await stats?.close();
      await sinks.close();
      process.exit(code);
    });
  };
  const startFleet = async (fleetConfig: FleetConfig): Promise<Master> => {
    const entry = new URL('./worker-process.js', import.meta.url);
    master = startMaster(fleetConfig, log, entry, () => exit(1));
    await master.ready;
    log.info({
      processes: fleetConfig.processes, threads: fleetConfig.threads,
      units: fleetConfig.processes * fleetConfig.threads,
    }, 'ready');
    return master;
  };
  const stats = config.stats === null ? null : await startStatsServer({
    host: config.stats.host, port: config.stats.port, log,
    snapshot: () => ({
      ...(master?.snapshot() ?? emptySnapshot()),
      ...(cluster ? { cluster: cluster.snapshot() } : {}),
    }),
  }).catch((err: unknown) => {
    log.error({ err }, 'cannot start the stats server');
    return null;
  });
  let signals = 0;
  const onStop = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      log.warn({ signal }, 'second signal; exiting now');
      process.exit(1);
    }
    exit(0);
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  let running = config;
  process.on('SIGHUP', () => {
    if (!master) return;
    // Outside cluster mode a reload also picks up a changed configuration
    // (in cluster mode the main's config comes from its own start).
    const next = reread && config.cluster === null ? reloadedConfig(running, reread, log) : null;
    if (next) {
      running = next;
      master.reconfigure(next);
    } else {
      master.reload();
    }
  });
  if (config.cluster === null) {
    await startFleet(config);
    return;
  }
  try {
    cluster = await startClusterNode(config, log, clusterKeyFromEnvironment(process.env),
      startFleet);
  } catch (err) {
    const code = (err as { code?: string }).code;
    log.error({ code, err: (err as Error).message }, 'cannot start cluster mode');
    await (master as Master | null)?.stop();
    process.exit(code === 'M2F_CLUSTER_KEY' ? 2 : 1);
  }
}

function emptySnapshot(): FleetSnapshot {
  return {
    masterPid: process.pid, startedAt: Date.now(), desiredUnits: 0, processes: [],
    restarts: {}, logDropped: 0,
  };
}

/** Reads the configuration (file, environment, flags); throws on an error. */
function readConfig(program: Command): FleetConfig {
  const o = program.opts<Record<string, unknown>>();
  const file = typeof o['config'] === 'string' ? readConfigFile(o['config']) : {};
  return buildConfig([file, fromEnvironment(process.env), flagsOf(program)]);
}

function configFrom(program: Command): FleetConfig {
  try {
    return readConfig(program);
  } catch (err) {
    fail((err as Error).message);
  }
}

/**
 * Validates a config file as `m2fleet --config FILE` would read it (the
 * environment included), and the cluster keys it names; returns a one-line
 * summary or throws. `format` reads a file whose name has no .json or .ini
 * extension (Ansible's `validate` hands over a temporary file).
 */
function checkConfigFile(file: string, format: 'json' | 'ini' | undefined): string {
  let raw: Record<string, unknown>;
  if (format === undefined) {
    raw = readConfigFile(file);
  } else {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).message;
      throw new ConfigFileError(file, undefined, `cannot read config file (${code})`);
    }
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    raw = format === 'json' ? parseJsonConfig(text, file) : parseIni(text, file);
  }
  const config = buildConfig([raw, fromEnvironment(process.env)]);
  if (config.cluster !== null) loadKeyring(config.cluster, clusterKeyFromEnvironment(process.env));
  const units = `${config.processes} process(es) x ${config.threads} thread(s)`;
  const c = config.cluster;
  if (c?.role === 'follower') return `follower in cluster ${c.group}`;
  const serving = `${config.zeromq.length} endpoint pair(s), ${units}`;
  return c === null ? serving : `main of cluster ${c.group}, ${serving}`;
}

/** GET /readyz of a running fleet: true with the body on 200. */
async function checkReady(stats: string): Promise<{ ready: boolean; text: string }> {
  const res = await fetch(`http://${stats}/readyz`, { signal: AbortSignal.timeout(5000) });
  return { ready: res.status === 200, text: (await res.text()).trim() };
}

/** Builds the command; exported so tests can parse without running. */
export function createProgram(): Command {
  const program = new Command('m2fleet')
    .description('Application server for Mongrel2: serves Node apps as ZeroMQ handlers')
    .usage('--zeromq SEND_SPEC,RECV_SPEC [--module PATH[:EXPORT]] [options]\n'
      + '       m2fleet reload|stop --pidfile FILE\n'
      + '       m2fleet status --stats HOST:PORT\n'
      + '       m2fleet check [--config FILE [--format json|ini]] [--stats HOST:PORT]')
    .helpOption('-h, --help', 'show this help')
    .version(process.env['npm_package_version'] ?? '0.1.0', '-V, --version')
    .showHelpAfterError('(run m2fleet --help for the option list)')
    .enablePositionalOptions()
    .exitOverride();
  addServeOptions(program);
  program.action(async () => {
    const config = configFrom(program);
    await runFleet(config, () => readConfig(program)).catch((err: unknown) => {
      const code = err instanceof M2FleetError ? err.code : undefined;
      process.stderr.write(`${JSON.stringify({ level: 50, msg: 'cannot start', code,
        err: (err as Error).message })}\n`);
      process.exit(1);
    });
  });
  program.command('reload').description('gracefully replace every process (SIGHUP)')
    .requiredOption('--pidfile <FILE>', 'the master\'s pidfile')
    .exitOverride()
    .action((o: { pidfile: string }) => signalMaster(o.pidfile, 'SIGHUP'));
  program.command('stop').description('drain and stop the fleet (SIGTERM)')
    .requiredOption('--pidfile <FILE>', 'the master\'s pidfile')
    .exitOverride()
    .action((o: { pidfile: string }) => signalMaster(o.pidfile, 'SIGTERM'));
  program.command('status').description('show the units of a running fleet')
    .requiredOption('--stats <HOST:PORT>', 'the fleet\'s --stats address')
    .option('--json', 'print the JSON status')
    .exitOverride()
    .action(async (o: { stats: string; json?: boolean }) => {
      try {
        const snap = await fetchStatus(`http://${o.stats}/status`);
        process.stdout.write(o.json ? JSON.stringify(snap, null, 2) + '\n' : formatStatusTable(snap));
      } catch (err) {
        process.stderr.write(`m2fleet: ${(err as Error).message}\n`);
        process.exit(1);
      }
    });
  program.command('check')
    .description('validate a config file (exit 1 if invalid) and/or check that a running '
      + 'fleet is ready (exit 1 if not)')
    .option('--config <FILE>', 'validate FILE as `m2fleet --config FILE` would read it, '
      + 'with the cluster keys it names')
    .addOption(new Option('--format <FORMAT>', 'read --config as json or ini whatever its name')
      .choices(['json', 'ini']))
    .option('--stats <HOST:PORT>', 'ask the fleet\'s --stats server whether every unit is ready')
    .exitOverride()
    .action(async (o: { config?: string; format?: 'json' | 'ini'; stats?: string }) => {
      if (o.config === undefined && o.stats === undefined) fail('check: give --config FILE or --stats HOST:PORT');
      if (o.config !== undefined) {
        try {
          process.stdout.write(`${o.config}: ok (${checkConfigFile(o.config, o.format)})\n`);
        } catch (err) {
          process.stderr.write(`m2fleet: invalid config ${o.config}: ${(err as Error).message}\n`);
          process.exit(1);
        }
      }
      if (o.stats !== undefined) {
        const r = await checkReady(o.stats).catch((err: unknown) => ({
          ready: false,
          text: `cannot reach it (${(err as { cause?: { code?: string } }).cause?.code
            ?? (err as Error).message})`,
        }));
        if (!r.ready) {
          process.stderr.write(`m2fleet: ${o.stats} not ready: ${r.text}\n`);
          process.exit(1);
        }
        process.stdout.write(`${o.stats}: ${r.text}\n`);
      }
    });
  addClusterCommands(program);
  return program;
}

function addClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('cluster mode tools').exitOverride();
  cluster.command('status').description('list the cluster members this node knows')
    .requiredOption('--stats <HOST:PORT>', 'the node\'s --stats address')
    .option('--json', 'print JSON')
    .exitOverride()
    .action(async (o: { stats: string; json?: boolean }) => {
      try {
        const snap = await fetchStatus(`http://${o.stats}/status`);
        if (!snap.cluster) throw new Error(`${o.stats} is not in cluster mode`);
        process.stdout.write(o.json ? JSON.stringify(snap.cluster, null, 2) + '\n'
          : formatClusterTable(snap.cluster));
      } catch (err) {
        process.stderr.write(`m2fleet: ${(err as Error).message}\n`);
        process.exit(1);
      }
    });
  cluster.command('keygen').description('print a new group key line (or an Ed25519 pair)')
    .option('--id <N>', 'key id', '1')
    .option('--sign', 'print an Ed25519 private and public key (PEM) instead')
    .exitOverride()
    .action((o: { id: string; sign?: boolean }) => {
      if (o.sign) {
        const pair = generateSigningKeyPair();
        process.stdout.write(pair.privatePem + pair.publicPem);
      } else {
        process.stdout.write(generateGroupKeyLine(Number(o.id)) + '\n');
      }
    });
}

async function main(argv: string[]): Promise<void> {
  const program = createProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
    throw err;
  }
}

void main(process.argv);
