#!/usr/bin/env node
/**
 * The m2fleet command line. Flags read like uWSGI's; a bad flag or value
 * names the problem and exits with status 2.
 */
import { Command, CommanderError, Option } from 'commander';
import { M2FleetError } from '../handler/errors.js';
import { buildConfig, fromEnvironment, type RawConfig } from './config.js';
import { createLogger } from './log.js';
import { serve, stopOnSignals, survive } from './serve.js';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Builds the command; exported so tests can parse without running. */
export function createProgram(): Command {
  const program = new Command('m2fleet')
    .description('Application server for Mongrel2: serves Node apps as ZeroMQ handlers')
    .usage('--zeromq SEND_SPEC,RECV_SPEC [--module PATH[:EXPORT]] [options]')
    .helpOption('-h, --help', 'show this help')
    .version(process.env['npm_package_version'] ?? '0.1.0', '-V, --version')
    .showHelpAfterError('(run m2fleet --help for the option list)')
    .exitOverride();
  const zeromqHelp = 'connect a PULL to Mongrel2\'s send_spec and a PUB to its '
    + 'recv_spec; repeat for several Mongrel2 handlers';
  program
    .option('--zeromq <SEND_SPEC,RECV_SPEC>', zeromqHelp, collect)
    .addOption(new Option('--zmq <SEND_SPEC,RECV_SPEC>', 'alias of --zeromq')
      .argParser(collect))
    .addOption(new Option('--mongrel2 <SEND_SPEC,RECV_SPEC>', 'alias of --zeromq')
      .argParser(collect))
    .option('--module <PATH[:EXPORT]>', 'load the app from PATH (default: the built-in test app)')
    .addOption(new Option('--interface <kind>', 'how to call the app')
      .choices(['auto', 'node', 'fetch']))
    .option('--fast-web-globals', 'let fetch apps use faster global Request/Response objects')
    .option('--mongrel2-chroot <DIR>', 'Mongrel2\'s chroot on this host; upload paths are '
      + 'relative to it (default: the working directory)')
    .option('--upload-dir <DIR>', 'directory of upload.temp_store, as Mongrel2 names it '
      + '(default: /tmp)')
    .addOption(new Option('--flow-control <MODE>', 'Mongrel2\'s download.flow_control: on, '
      + 'off, or auto to learn it from the first request (auto)').choices(['auto', 'on', 'off']))
    .option('--default-host <HOST>', 'Host header for requests without one (default: localhost)')
    .option('--max-inflight <N>', 'requests in flight per unit before it stops pulling (64)')
    .option('--receive-hwm <N>', 'ZeroMQ receive high-water mark per unit (16)')
    .option('--max-message-size <BYTES>', 'largest request message accepted (64 MiB; -1: any)')
    .option('--idle-timeout <TIME>', 'forget an idle keep-alive connection after TIME (5m)')
    .option('--subscribe-timeout <TIME>', 'wait this long for Mongrel2\'s subscription (2s)')
    .option('--mercy <TIME>', 'graceful stop budget for requests in flight (30s)')
    .addOption(new Option('--log-level <LEVEL>', 'lowest level logged (info)')
      .choices(['error', 'warn', 'info', 'debug']))
    .addOption(new Option('--log-format <FORMAT>', 'json lines or pretty text (json)')
      .choices(['json', 'pretty']))
    .option('--debug [COMPONENTS]', 'debug logging, for all or for handler,app,... ');
  return program;
}

function flagsOf(program: Command): RawConfig {
  const o = program.opts<Record<string, unknown>>();
  const specs = [o['zeromq'], o['zmq'], o['mongrel2']]
    .flatMap((v) => (Array.isArray(v) ? v : []));
  const flags: RawConfig = {
    zeromq: specs.length > 0 ? specs : undefined,
    module: o['module'],
    interface: o['interface'],
    fastWebGlobals: o['fastWebGlobals'],
    mongrel2Chroot: o['mongrel2Chroot'],
    uploadDir: o['uploadDir'],
    defaultHost: o['defaultHost'],
    maxInflight: o['maxInflight'],
    receiveHighWaterMark: o['receiveHwm'],
    maxMessageSize: o['maxMessageSize'],
    idleTimeout: o['idleTimeout'],
    subscribeTimeout: o['subscribeTimeout'],
    mercy: o['mercy'],
    flowControl: o['flowControl'],
    logLevel: o['logLevel'],
    logFormat: o['logFormat'],
    debug: o['debug'],
  };
  for (const k of Object.keys(flags) as (keyof RawConfig)[]) {
    if (flags[k] === undefined) delete flags[k];
  }
  return flags;
}

async function main(argv: string[]): Promise<void> {
  const program = createProgram();
  try {
    program.parse(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode === 0 ? 0 : 2);
    }
    throw err;
  }
  let config;
  try {
    config = buildConfig([fromEnvironment(process.env), flagsOf(program)]);
  } catch (err) {
    process.stderr.write(`m2fleet: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const log = createLogger(config.log);
  survive(log);
  try {
    const serving = await serve(config, log);
    stopOnSignals(serving, log);
  } catch (err) {
    const code = err instanceof M2FleetError ? err.code : undefined;
    log.error({ code, err: (err as Error).message }, 'cannot start');
    process.exit(1);
  }
}

void main(process.argv);
