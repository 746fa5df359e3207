/**
 * The one typed configuration of a node: defaults, then environment, then
 * flags. Built and validated in one place, frozen, and passed down; it is
 * plain JSON data so that cluster mode can send it over the network.
 */
import net from 'node:net';
import path from 'node:path';
import ms from 'ms';
import { M2FleetError } from '../handler/errors.js';
import type { EndpointSpec } from '../handler/endpoint.js';
import {
  DEFAULT_SOCKET_LIMITS, type SocketKind, type SocketLimits,
} from '../handler/gateway.js';
import { flagName } from './config-file.js';
import type { LevelName } from './log.js';
import type { SchedPolicy } from './sched.js';

/** Everything a node needs to serve; see `m2fleet --help` for each key. */
export interface FleetConfig {
  /** `--zeromq SEND_SPEC,RECV_SPEC`, one entry per Mongrel2 handler. */
  readonly zeromq: readonly EndpointSpec[];
  /** `--http`, `--socket` (uwsgi), `--fastcgi-socket`: standard sockets. */
  readonly sockets: readonly SocketSpec[];
  /** Limits of the standard sockets. */
  readonly socketLimits: SocketLimits;
  /** Mode of unix socket files m2fleet creates (`--chmod-socket`), or null. */
  readonly chmodSocket: number | null;
  /** `--module PATH[:EXPORT]`; null serves the built-in test app. */
  readonly module: string | null;
  readonly interface: 'auto' | 'node' | 'fetch';
  readonly fastWebGlobals: boolean;
  /** Mongrel2's chroot on this host (upload paths are relative to it). */
  readonly mongrel2Chroot: string;
  /** upload.temp_store's directory, as Mongrel2 names it. */
  readonly uploadDir: string;
  /** Host header for requests that carry none. */
  readonly defaultHost: string;
  readonly maxInflight: number;
  readonly receiveHighWaterMark: number;
  /** Largest request frame in bytes; -1 for no limit. */
  readonly maxMessageSize: number;
  readonly idleTimeoutMs: number;
  readonly subscribeTimeoutMs: number;
  /** Graceful-stop budget before in-flight requests are abandoned. */
  readonly mercyMs: number;
  /** Mongrel2's download.flow_control: on, off, or auto (learned). */
  readonly flowControl: 'auto' | 'on' | 'off';
  /** `-p`: worker processes. */
  readonly processes: number;
  /** `--threads`: units (worker threads) per process. */
  readonly threads: number;
  /** Replace a process after this many requests (0: never). */
  readonly maxRequests: number;
  /** Replace a process whose resident memory passes this many MiB (0: never). */
  readonly reloadOnRssMb: number;
  /** Kill and replace a process stuck this long on one request (0: never). */
  readonly harakiriMs: number;
  /** CPU scheduling policy of the fleet's threads (see sched.ts). */
  readonly schedPolicy: SchedPolicy;
  /** Where the master writes its pid (for `m2fleet reload`), or null. */
  readonly pidfile: string | null;
  /** `--stats HOST:PORT`: metrics and status server, or null. */
  readonly stats: { readonly host: string; readonly port: number } | null;
  /** `--logger`: stderr, or `zeromq:ENDPOINT` (a PUSH to a collector). */
  readonly logger: { readonly kind: 'stderr' } | { readonly kind: 'zeromq'; readonly endpoint: string };
  /** One info line per request (msg "access"). */
  readonly accessLog: boolean;
  /** `--cluster GROUP:PORT` and its settings, or null outside cluster mode. */
  readonly cluster: ClusterSettings | null;
  readonly log: {
    readonly level: LevelName;
    readonly format: 'json' | 'pretty';
    readonly debug: readonly string[];
  };
}

/** A standard socket to listen on: TCP (host and port) or a unix path. */
export interface SocketSpec {
  readonly kind: SocketKind;
  /** As configured (for logs). */
  readonly address: string;
  /** TCP: an IP address; `0.0.0.0` for `:PORT` (every interface). */
  readonly host: string | null;
  readonly port: number | null;
  /** Unix socket path (absolute). */
  readonly path: string | null;
}

/**
 * Cluster mode settings. They stay on this host: none of them is ever
 * adopted from the network. Keys are named by file, never given inline.
 */
export interface ClusterSettings {
  /** Main when this node has its own --zeromq, follower otherwise. */
  readonly role: 'main' | 'follower';
  /** Multicast group and port, e.g. 239.1.1.1:1717 or [ff15::1]:1717. */
  readonly group: string;
  readonly name: string;
  /** Interface address or name for multicast; null: pick the only one. */
  readonly iface: string | null;
  readonly ttl: number;
  readonly peers: readonly { readonly address: string; readonly port: number }[];
  /** False: unicast to the peers only. */
  readonly multicast: boolean;
  /** Group keys (HMAC), `ID BASE64` per line; or M2FLEET_CLUSTER_KEY. */
  readonly keyFile: string | null;
  /** Main in signed mode: `ID:FILE` of its Ed25519 private key. */
  readonly signKey: string | null;
  /** Followers in signed mode: `ID:FILE` of the main's public keys. */
  readonly verifyKeys: readonly string[];
  /** Directories an adopted module must lie in. */
  readonly appRoots: readonly string[];
  /** Hosts adopted endpoints may name; empty: any (tcp:// only). */
  readonly endpointHosts: readonly string[];
  readonly stateDir: string;
  readonly requireMain: boolean;
}

/** Raw values before validation: strings from flags or the environment. */
export type RawConfig = Partial<Record<keyof FlatKeys, unknown>>;

/** Every key a config layer may set (flags, file, environment). */
export const CONFIG_KEYS = [
  'zeromq', 'http', 'socket', 'fastcgiSocket', 'socketMaxHeaderSize', 'socketMaxHeaders',
  'socketMaxBody', 'socketHeaderTimeout', 'socketRequestTimeout', 'socketIdleTimeout',
  'chmodSocket', 'module', 'interface', 'fastWebGlobals', 'mongrel2Chroot', 'uploadDir',
  'defaultHost', 'maxInflight', 'receiveHighWaterMark', 'maxMessageSize', 'idleTimeout',
  'subscribeTimeout', 'mercy', 'flowControl', 'processes', 'threads', 'maxRequests',
  'reloadOnRss', 'harakiri', 'schedPolicy', 'pidfile', 'stats', 'logger', 'accessLog', 'logLevel',
  'logFormat', 'debug', 'cluster', 'clusterName', 'clusterIface', 'clusterTtl',
  'clusterPeers', 'clusterNoMulticast', 'clusterKeyFile', 'clusterSignKey',
  'clusterVerifyKey', 'clusterAppRoot', 'clusterEndpointHost', 'clusterStateDir',
  'clusterRequireMain',
] as const;

type FlatKeys = Record<(typeof CONFIG_KEYS)[number], unknown>;

/** A bad configuration value; the message names the key and the value. */
export class ConfigError extends M2FleetError {
  readonly key: string;

  constructor(key: string, value: unknown, why: string) {
    super('M2F_CONFIG', `${key} (--${flagName(key)}): ${why} (got ${JSON.stringify(value)})`);
    this.key = key;
  }
}


const SPEC = /^(tcp:\/\/[^,\s]+:\d+|ipc:\/\/[^,\s]+|inproc:\/\/[^,\s]+)$/;

/** Environment variables read, and the key each one sets. */
export const ENVIRONMENT: Readonly<Record<string, keyof FlatKeys>> = {
  M2FLEET_ZEROMQ: 'zeromq',
  M2FLEET_HTTP: 'http',
  M2FLEET_SOCKET: 'socket',
  M2FLEET_FASTCGI_SOCKET: 'fastcgiSocket',
  M2FLEET_MODULE: 'module',
  M2FLEET_INTERFACE: 'interface',
  M2FLEET_MONGREL2_CHROOT: 'mongrel2Chroot',
  M2FLEET_UPLOAD_DIR: 'uploadDir',
  M2FLEET_FLOW_CONTROL: 'flowControl',
  M2FLEET_PROCESSES: 'processes',
  M2FLEET_THREADS: 'threads',
  M2FLEET_LOGGER: 'logger',
  M2FLEET_STATS: 'stats',
  M2FLEET_PIDFILE: 'pidfile',
  M2FLEET_CLUSTER: 'cluster',
  M2FLEET_LOG_LEVEL: 'logLevel',
  M2FLEET_LOG_FORMAT: 'logFormat',
  M2FLEET_DEBUG: 'debug',
  M2FLEET_SCHED_POLICY: 'schedPolicy',
};

function parseSpecs(value: unknown): EndpointSpec[] {
  const list = value === undefined ? [] : Array.isArray(value) ? value : [value];
  return list.flatMap((item) => String(item).split(/\s*;\s*/).filter(Boolean))
    .map((pair) => {
      const parts = pair.split(',').map((s) => s.trim());
      if (parts.length !== 2 || !SPEC.test(parts[0]!) || !SPEC.test(parts[1]!)) {
        throw new ConfigError('zeromq', pair,
          'expected SEND_SPEC,RECV_SPEC such as tcp://127.0.0.1:9999,tcp://127.0.0.1:9998');
      }
      return Object.freeze({ sendSpec: parts[0]!, recvSpec: parts[1]! });
    });
}

function int(key: string, value: unknown, def: number, min: number): number {
  if (value === undefined) return def;
  const text = String(value).trim();
  const n = typeof value === 'number' ? value : /^-?\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(key, value, `expected a whole number >= ${min}`);
  }
  return n;
}

function capped(key: string, n: number, max: number): number {
  if (n > max) throw new ConfigError(key, n, `expected at most ${max}`);
  return n;
}

function duration(key: string, value: unknown, def: string): number {
  const raw = value === undefined ? def : value;
  // A bare number means seconds, from a flag, a file or the environment.
  if (typeof raw === 'number' && raw >= 0 && Number.isFinite(raw)) return raw * 1000;
  const text = String(raw).trim();
  const n = /^\d+$/.test(text) ? Number(text) * 1000
    : text === '' ? NaN : ms(text as ms.StringValue);
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
    throw new ConfigError(key, value, 'expected a duration such as 30s, 500ms or 2m');
  }
  return n;
}

function oneOf<T extends string>(key: string, value: unknown, allowed: readonly T[], def: T): T {
  if (value === undefined) return def;
  if (!allowed.includes(value as T)) {
    throw new ConfigError(key, value, `expected one of ${allowed.join(', ')}`);
  }
  return value as T;
}

function bool(key: string, value: unknown): boolean {
  if (value === undefined || value === false || value === 'false' || value === '0') return false;
  if (value === true || value === 'true' || value === '1') return true;
  throw new ConfigError(key, value, 'expected true or false');
}

function list(value: unknown): string[] {
  if (value === undefined || value === true) return value === true ? ['*'] : [];
  const items = Array.isArray(value) ? value : [value];
  return items.flatMap((v) => String(v).split(',')).map((s) => s.trim()).filter(Boolean);
}

function hostPort(key: string, value: unknown): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(String(value).trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ConfigError(key, value, 'expected HOST:PORT such as 127.0.0.1:9191');
  const host = m[1] === '' ? '0.0.0.0' : m[1]!.replace(/^\[(.*)\]$/, '$1');
  return Object.freeze({ host, port });
}

const SOCKET_KEYS: Record<SocketKind, 'http' | 'socket' | 'fastcgiSocket'> = {
  http: 'http', uwsgi: 'socket', fastcgi: 'fastcgiSocket',
};

// `HOST:PORT`, `[V6]:PORT`, `:PORT` (every interface, as in uWSGI) or a
// unix socket path (anything with a slash).
function socketsOf(raw: RawConfig, cwd: string): SocketSpec[] {
  const out: SocketSpec[] = [];
  for (const kind of Object.keys(SOCKET_KEYS) as SocketKind[]) {
    const key = SOCKET_KEYS[kind];
    for (const address of list(raw[key])) {
      if (address.includes('/')) {
        const file = path.resolve(cwd, address);
        // sun_path holds 108 bytes with the NUL; a longer path would be
        // cut short by the kernel.
        if (Buffer.byteLength(file) > 107) {
          throw new ConfigError(key, address, 'unix socket path longer than 107 bytes');
        }
        out.push(Object.freeze({ kind, address, host: null, port: null, path: file }));
        continue;
      }
      const m = /^(.*):(\d{1,5})$/.exec(address);
      const port = m ? Number(m[2]) : NaN;
      let host = m ? m[1]!.replace(/^\[(.*)\]$/, '$1') : '';
      if (host === 'localhost') host = '127.0.0.1';
      if (host === '') host = '0.0.0.0';
      if (!m || port > 65535 || net.isIP(host) === 0) {
        throw new ConfigError(key, address,
          'expected IP:PORT, [IPv6]:PORT, :PORT (every interface) or a unix socket path');
      }
      out.push(Object.freeze({ kind, address, host, port, path: null }));
    }
  }
  const seen = new Set<string>();
  for (const s of out) {
    const where = s.path ?? `${s.host}:${s.port}`;
    if (seen.has(where)) throw new ConfigError(SOCKET_KEYS[s.kind], s.address, 'address given twice');
    seen.add(where);
  }
  return out;
}

function socketLimitsOf(raw: RawConfig): SocketLimits {
  const d = DEFAULT_SOCKET_LIMITS;
  const seconds = (ms: number): string => `${ms / 1000}s`;
  return Object.freeze({
    maxHeaderSize: capped('socketMaxHeaderSize',
      int('socketMaxHeaderSize', raw.socketMaxHeaderSize, d.maxHeaderSize, 1024), 65535),
    maxHeaders: int('socketMaxHeaders', raw.socketMaxHeaders, d.maxHeaders, 1),
    maxBody: int('socketMaxBody', raw.socketMaxBody, d.maxBody, 0),
    headerTimeoutMs: duration('socketHeaderTimeout', raw.socketHeaderTimeout, seconds(d.headerTimeoutMs)),
    requestTimeoutMs: duration('socketRequestTimeout', raw.socketRequestTimeout, seconds(d.requestTimeoutMs)),
    idleTimeoutMs: duration('socketIdleTimeout', raw.socketIdleTimeout, seconds(d.idleTimeoutMs)),
  });
}

function fileMode(value: unknown): number | null {
  if (value === undefined || value === '') return null;
  const text = String(value).trim();
  if (!/^0?[0-7]{3}$/.test(text)) throw new ConfigError('chmodSocket', value, 'expected an octal mode such as 660');
  return parseInt(text, 8);
}

function loggerOf(value: unknown): FleetConfig['logger'] {
  if (value === undefined || value === '' || value === 'stderr') {
    return Object.freeze({ kind: 'stderr' as const });
  }
  const m = /^(?:zeromq|zmq):((?:tcp|ipc):\/\/\S+)$/.exec(String(value));
  if (!m) {
    throw new ConfigError('logger', value, 'expected stderr or zeromq:tcp://HOST:PORT');
  }
  return Object.freeze({ kind: 'zeromq' as const, endpoint: m[1]! });
}

function clusterOf(raw: RawConfig, hasZeromq: boolean, cwd: string): ClusterSettings | null {
  if (raw.cluster === undefined || raw.cluster === '') return null;
  const group = String(raw.cluster).trim();
  if (!/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:%.\w-]+\]):\d{1,5}$/.test(group)) {
    throw new ConfigError('cluster', raw.cluster, 'expected GROUP:PORT such as 239.1.1.1:1717');
  }
  const name = String(raw.clusterName ?? 'm2fleet');
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new ConfigError('clusterName', raw.clusterName, 'expected 1-64 of [A-Za-z0-9._-]');
  }
  const peers = list(raw.clusterPeers).map((p) => {
    const hp = hostPort('clusterPeers', p);
    return Object.freeze({ address: hp.host, port: hp.port });
  });
  const multicast = !bool('clusterNoMulticast', raw.clusterNoMulticast);
  if (!multicast && peers.length === 0) {
    throw new ConfigError('clusterPeers', raw.clusterPeers, 'needed when multicast is off');
  }
  const paths = (v: unknown): string[] => list(v).map((p) => path.resolve(cwd, p));
  const roots = paths(raw.clusterAppRoot);
  return Object.freeze({
    role: hasZeromq ? 'main' as const : 'follower' as const,
    group,
    name,
    iface: raw.clusterIface === undefined ? null : String(raw.clusterIface),
    ttl: int('clusterTtl', raw.clusterTtl, 1, 0),
    peers: Object.freeze(peers),
    multicast,
    keyFile: raw.clusterKeyFile === undefined ? null : path.resolve(cwd, String(raw.clusterKeyFile)),
    signKey: raw.clusterSignKey === undefined ? null : String(raw.clusterSignKey),
    verifyKeys: Object.freeze(list(raw.clusterVerifyKey)),
    appRoots: Object.freeze(roots.length > 0 ? roots : ['/srv/m2fleet/apps']),
    endpointHosts: Object.freeze(list(raw.clusterEndpointHost)),
    stateDir: path.resolve(cwd, String(raw.clusterStateDir ?? '/var/lib/m2fleet/cluster')),
    requireMain: bool('clusterRequireMain', raw.clusterRequireMain),
  });
}

/** Turns `SEND,RECV` pair strings into endpoint specs (validated). */
export function parseEndpointPairs(pairs: readonly string[]): EndpointSpec[] {
  return parseSpecs([...pairs]);
}

/**
 * The cluster group key from M2FLEET_CLUSTER_KEY. Kept out of the config
 * object on purpose: the config is sent to worker processes and shown in
 * /status; key material is handed to the cluster member alone.
 */
export function clusterKeyFromEnvironment(env: NodeJS.ProcessEnv): string | undefined {
  return env['M2FLEET_CLUSTER_KEY'];
}

/** Reads the environment variables of {@link ENVIRONMENT}. */
export function fromEnvironment(env: NodeJS.ProcessEnv): RawConfig {
  const out: RawConfig = {};
  for (const [name, key] of Object.entries(ENVIRONMENT)) {
    if (env[name] !== undefined && env[name] !== '') out[key] = env[name];
  }
  if (out.debug === undefined && /\bm2fleet\b/.test(env['NODE_DEBUG'] ?? '')) out.debug = '*';
  return out;
}

/**
 * Validates and freezes a configuration. Later layers win: pass
 * `[fromEnvironment(env), flags]`. Throws {@link ConfigError}.
 */
export function buildConfig(layers: readonly RawConfig[], cwd = process.cwd()): FleetConfig {
  const raw: RawConfig = Object.assign({}, ...layers);
  for (const key of Object.keys(raw)) {
    if (!(CONFIG_KEYS as readonly string[]).includes(key)) {
      throw new ConfigError(key, raw[key as keyof RawConfig], 'unknown option');
    }
  }
  const zeromq = parseSpecs(raw.zeromq);
  const cluster = clusterOf(raw, zeromq.length > 0, cwd);
  const sockets = socketsOf(raw, cwd);
  if (zeromq.length === 0 && cluster === null && sockets.length === 0) {
    throw new ConfigError('zeromq', raw.zeromq,
      'at least one SEND_SPEC,RECV_SPEC (or --http, --socket, --fastcgi-socket) is needed');
  }
  const module = raw.module === undefined || raw.module === '' ? null : String(raw.module);
  const config: FleetConfig = {
    zeromq,
    sockets: Object.freeze(sockets),
    socketLimits: socketLimitsOf(raw),
    chmodSocket: fileMode(raw.chmodSocket),
    module,
    interface: oneOf('interface', raw.interface, ['auto', 'node', 'fetch'], 'auto'),
    fastWebGlobals: bool('fastWebGlobals', raw.fastWebGlobals),
    mongrel2Chroot: path.resolve(cwd, String(raw.mongrel2Chroot ?? '.')),
    uploadDir: String(raw.uploadDir ?? '/tmp'),
    defaultHost: String(raw.defaultHost ?? 'localhost'),
    maxInflight: int('maxInflight', raw.maxInflight, 64, 1),
    receiveHighWaterMark: int('receiveHighWaterMark', raw.receiveHighWaterMark, 16, 1),
    maxMessageSize: int('maxMessageSize', raw.maxMessageSize, 64 * 1024 * 1024, -1),
    idleTimeoutMs: duration('idleTimeout', raw.idleTimeout, '5m'),
    subscribeTimeoutMs: duration('subscribeTimeout', raw.subscribeTimeout, '2s'),
    mercyMs: duration('mercy', raw.mercy, '30s'),
    flowControl: oneOf('flowControl', raw.flowControl, ['auto', 'on', 'off'], 'auto'),
    processes: capped('processes', int('processes', raw.processes, 1, 1), 1024),
    threads: capped('threads', int('threads', raw.threads, 1, 1), 256),
    maxRequests: int('maxRequests', raw.maxRequests, 0, 0),
    reloadOnRssMb: int('reloadOnRss', raw.reloadOnRss, 0, 0),
    harakiriMs: raw.harakiri === undefined ? 0 : duration('harakiri', raw.harakiri, '0'),
    schedPolicy: oneOf('schedPolicy', raw.schedPolicy, ['batch', 'inherit'], 'batch'),
    pidfile: raw.pidfile === undefined || raw.pidfile === '' ? null
      : path.resolve(cwd, String(raw.pidfile)),
    stats: raw.stats === undefined || raw.stats === '' ? null : hostPort('stats', raw.stats),
    logger: loggerOf(raw.logger),
    accessLog: bool('accessLog', raw.accessLog),
    cluster,
    log: Object.freeze({
      level: oneOf('logLevel', raw.logLevel, ['error', 'warn', 'info', 'debug'], 'info'),
      format: oneOf('logFormat', raw.logFormat, ['json', 'pretty'], 'json'),
      debug: Object.freeze(list(raw.debug)),
    }),
  };
  if (/[\s]/.test(config.defaultHost) || config.defaultHost === '') {
    throw new ConfigError('defaultHost', raw.defaultHost, 'expected a host name');
  }
  return Object.freeze({ ...config, zeromq: Object.freeze(zeromq) });
}
