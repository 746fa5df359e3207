/**
 * Starts one handler unit in the calling thread: loads the app, connects
 * to every Mongrel2 endpoint under a fresh identity, and says how to stop.
 */
import cluster from 'node:cluster';
import http from 'node:http';
import type net from 'node:net';
import { v4 as uuidv4 } from 'uuid';
import {
  HandlerUnit, loadApp, testApp, type ActiveRequest, type CompletedRequest, type Logger,
  type SocketListener,
} from '../handler/index.js';
import type { FleetConfig } from './config.js';

/** A running unit and how to stop it. */
export interface Serving {
  unit: HandlerUnit;
  /** The unit's identity (a UUID), logged at start. */
  identity: string;
  /** Drains (up to the mercy time), flushes replies, closes the sockets. */
  stop(): Promise<void>;
}

/** Per-request callbacks of {@link startUnit}. */
export interface UnitHooks {
  onRequestStart?: (request: ActiveRequest) => void;
  onResponse?: (request: CompletedRequest) => void;
  onRelay?: (endpointIndex: number, frame: Buffer) => void;
  onFlowControl?: () => void;
}

async function appServer(config: FleetConfig, log: Logger): Promise<{
  server: http.Server; kind: string; close(): Promise<void>;
}> {
  if (config.module === null) {
    const server = http.createServer(testApp);
    return { server, kind: 'test-app', close: async () => undefined };
  }
  return loadApp(config.module, {
    interface: config.interface,
    fastWebGlobals: config.fastWebGlobals,
    logger: log.child({ component: 'app' }),
  });
}

/**
 * Listens on an inherited descriptor of a socket the master bound. Node
 * routes a listen on a descriptor in a cluster worker through the master
 * (which a thread cannot reach); for the length of this synchronous call
 * the thread says it is the primary, so Node listens here directly.
 */
function listenOnDescriptor(server: net.Server, fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const c = cluster as { isPrimary: boolean };
    const saved = c.isPrimary;
    c.isPrimary = true;
    try {
      server.listen({ fd }, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      c.isPrimary = saved;
    }
  });
}

/** The unit's standard sockets, from descriptors the master sent. */
function socketListeners(config: FleetConfig, fds: readonly number[]): SocketListener[] {
  return config.sockets.flatMap((spec, i) => {
    const fd = fds[i];
    if (fd === undefined) return [];
    return [{ kind: spec.kind, address: spec.address, listen: (s: net.Server) => listenOnDescriptor(s, fd) }];
  });
}

/** Loads the app and starts one unit on all endpoints and sockets. */
export async function startUnit(
  config: FleetConfig, log: Logger, socketFds: readonly number[] = [], hooks: UnitHooks = {},
  lingerMs = 2000,
): Promise<Serving> {
  const app = await appServer(config, log);
  const identity = uuidv4();
  const unitLog = log.child({ component: 'handler', unit: identity });
  const unit = new HandlerUnit({
    endpoints: config.zeromq,
    server: app.server,
    log: unitLog,
    identity,
    maxInflight: config.maxInflight,
    defaultHost: config.defaultHost,
    upload: { chroot: config.mongrel2Chroot, dir: config.uploadDir },
    idleTimeoutMs: config.idleTimeoutMs,
    flowControl: config.flowControl,
    // In cluster mode other hosts' units share the connections too.
    units: config.cluster === null ? config.processes * config.threads : Number.MAX_SAFE_INTEGER,
    // The master routes each connection to one unit (inbox.ts); other
    // hosts of a cluster share the connections without such routing.
    affinity: config.cluster === null && config.zeromq.every((e) => e.pullSpec !== undefined),
    receiveHighWaterMark: config.receiveHighWaterMark,
    maxMessageSize: config.maxMessageSize,
    subscribeTimeoutMs: config.subscribeTimeoutMs,
    lingerMs,
    sockets: socketListeners(config, socketFds),
    socketLimits: config.socketLimits,
    ...hooks,
  });
  await unit.start();
  unitLog.info({
    app: app.kind,
    module: config.module,
    endpoints: config.zeromq.map((e) => `${e.sendSpec},${e.recvSpec}`),
    ...(config.sockets.length > 0 ? { sockets: config.sockets.map((s) => `${s.kind} ${s.address}`) } : {}),
  }, 'unit ready');
  return {
    unit,
    identity,
    stop: async () => {
      await unit.stop(config.mercyMs);
      await app.close();
    },
  };
}

/**
 * Keeps the thread alive through app mistakes: an uncaught exception or
 * rejection from app code is logged in one line, and serving goes on.
 */
export function survive(log: Logger): void {
  process.on('uncaughtException', (err) => {
    log.error({ err }, 'uncaught exception in app code; still serving');
  });
  process.on('unhandledRejection', (err) => {
    log.error({ err }, 'unhandled rejection in app code; still serving');
  });
}
