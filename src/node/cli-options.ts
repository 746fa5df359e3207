/**
 * The serving options of `m2fleet`, and their mapping onto config keys.
 * Help texts give each default in parentheses.
 */
import { Command, Option } from 'commander';
import type { RawConfig } from './config.js';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Adds every serving option to `program`. */
export function addServeOptions(program: Command): void {
  const spec = '<SEND_SPEC,RECV_SPEC>';
  program
    .option(`--zeromq ${spec}`, 'connect a PULL to Mongrel2\'s send_spec and a PUB to its '
      + 'recv_spec; repeat for several Mongrel2 handlers', collect)
    .addOption(new Option(`--zmq ${spec}`, 'alias of --zeromq').argParser(collect))
    .addOption(new Option(`--mongrel2 ${spec}`, 'alias of --zeromq').argParser(collect))
    .option('--http <ADDR:PORT>', 'also serve plain HTTP here (:PORT means every interface); '
      + 'repeatable', collect)
    .option('--socket <ADDR:PORT|PATH>', 'also serve the uwsgi protocol here, for nginx '
      + 'uwsgi_pass (a path: a unix socket); repeatable', collect)
    .option('--fastcgi-socket <ADDR:PORT|PATH>', 'also serve FastCGI here, for nginx '
      + 'fastcgi_pass; repeatable', collect)
    .option('--socket-max-header-size <BYTES>', 'largest request head on those sockets '
      + '(HTTP head, or all uwsgi/FastCGI variables) (16384)')
    .option('--socket-max-headers <N>', 'most header fields per request on those sockets (100)')
    .option('--socket-max-body <BYTES>', 'largest request body on those sockets (64 MiB; 0: any)')
    .option('--socket-header-timeout <TIME>', 'time for a request head to arrive (10s)')
    .option('--socket-request-timeout <TIME>', 'time for a whole request to arrive (300s)')
    .option('--socket-idle-timeout <TIME>', 'close a connection idle this long (15s)')
    .option('--chmod-socket <MODE>', 'mode of unix socket files (default: from the umask)')
    .option('--module <PATH[:EXPORT]>', 'load the app from PATH (default: the built-in test app)')
    .addOption(new Option('--interface <kind>', 'how to call the app (auto)')
      .choices(['auto', 'node', 'fetch']))
    .option('--fast-web-globals', 'let fetch apps use faster global Request/Response objects')
    .option('-p, --processes <N>', 'worker processes (1)')
    .option('--threads <N>', 'units (threads) per process, each its own Mongrel2 consumer (1)')
    .option('--config <FILE>', 'read options from a JSON or ini ([m2fleet]) file')
    .option('--mongrel2-chroot <DIR>', 'Mongrel2\'s chroot on this host; upload paths are '
      + 'relative to it (the working directory)')
    .option('--upload-dir <DIR>', 'directory of upload.temp_store, as Mongrel2 names it (/tmp)')
    .addOption(new Option('--flow-control <MODE>', 'Mongrel2\'s download.flow_control: on, '
      + 'off, or auto to learn it from the first request (auto)').choices(['auto', 'on', 'off']))
    .option('--default-host <HOST>', 'Host header for requests without one (localhost)')
    .option('--max-inflight <N>', 'requests in flight per unit before it stops pulling (64)')
    .option('--receive-hwm <N>', 'ZeroMQ receive high-water mark per unit (16)')
    .option('--max-message-size <BYTES>', 'largest request message accepted (64 MiB; -1: any)')
    .option('--idle-timeout <TIME>', 'forget an idle keep-alive connection after TIME (5m)')
    .option('--subscribe-timeout <TIME>', 'wait this long for Mongrel2\'s subscription (2s)')
    .option('--mercy <TIME>', 'graceful stop/reload budget for requests in flight (30s)')
    .option('--max-requests <N>', 'replace a process after N requests (0: never)')
    .option('--reload-on-rss <MiB>', 'replace a process whose RSS passes MiB (0: never)')
    .option('--harakiri <TIME>', 'kill and replace a process stuck on one request for TIME')
    .addOption(new Option('--sched-policy <POLICY>', 'CPU scheduling of the fleet\'s threads: '
      + 'batch (SCHED_BATCH, fewer preemptions between them) or inherit (as started) (batch)')
      .choices(['batch', 'inherit']))
    .option('--pidfile <FILE>', 'write the master\'s pid here (for m2fleet reload/stop)')
    .option('--stats <HOST:PORT>', 'serve /metrics, /healthz, /readyz and /status here')
    .option('--logger <SINK>', 'stderr, or zeromq:tcp://HOST:PORT (stderr)')
    .option('--access-log', 'log one line per request')
    .addOption(new Option('--log-level <LEVEL>', 'lowest level logged (info)')
      .choices(['error', 'warn', 'info', 'debug']))
    .addOption(new Option('--log-format <FORMAT>', 'json lines or pretty text (json)')
      .choices(['json', 'pretty']))
    .option('--debug [COMPONENTS]', 'debug logging, for all or for handler,app,...')
    .option('--cluster <GROUP:PORT>', 'cluster mode: with --zeromq, announce this config '
      + '(main); alone, adopt the main\'s (follower)')
    .option('--cluster-name <NAME>', 'cluster name carried in every datagram (m2fleet)')
    .option('--cluster-iface <ADDR|NAME>', 'multicast interface (required on multi-homed hosts)')
    .option('--cluster-ttl <N>', 'multicast TTL (1: this link only)')
    .option('--cluster-peers <HOST:PORT,...>', 'also send every datagram to these peers (unicast)',
      collect)
    .option('--cluster-no-multicast', 'unicast to --cluster-peers only')
    .option('--cluster-key-file <FILE>', 'group keys, "ID BASE64" per line, mode 0600 '
      + '(or M2FLEET_CLUSTER_KEY)')
    .option('--cluster-sign-key <ID:FILE>', 'main, signed mode: Ed25519 private key (PEM)')
    .option('--cluster-verify-key <ID:FILE>', 'follower, signed mode: the main\'s public key',
      collect)
    .option('--cluster-app-root <DIR>', 'adopted modules must lie here (/srv/m2fleet/apps)',
      collect)
    .option('--cluster-endpoint-host <HOST>', 'hosts adopted endpoints may name (any)', collect)
    .option('--cluster-state-dir <DIR>', 'last-good config and node id '
      + '(/var/lib/m2fleet/cluster)')
    .option('--cluster-require-main', 'follower: wait for the main instead of last-good');
}

// Flag attribute (commander's camelCase) → config key, where they differ.
const RENAMED: Record<string, keyof RawConfig> = {
  receiveHwm: 'receiveHighWaterMark',
};

/** The flags that were given, as config keys (aliases merged). */
export function flagsOf(program: Command): RawConfig {
  const o = program.opts<Record<string, unknown>>();
  const flags: Record<string, unknown> = {};
  const specs = [o['zeromq'], o['zmq'], o['mongrel2']]
    .flatMap((v) => (Array.isArray(v) ? v : []));
  if (specs.length > 0) flags['zeromq'] = specs;
  for (const [name, value] of Object.entries(o)) {
    if (value === undefined || ['zeromq', 'zmq', 'mongrel2', 'config'].includes(name)) continue;
    flags[RENAMED[name] ?? name] = value;
  }
  return flags as RawConfig;
}
