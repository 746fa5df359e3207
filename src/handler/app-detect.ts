/**
 * Decides what kind of app a module exported and turns it into one
 * never-bound `http.Server` that m2fleet can inject connections into.
 * The checks run in a fixed order, first match wins (fetch apps first,
 * because itty-router and Elysia also answer `listen`, `handle`, ...).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { getRequestListener } from '@hono/node-server';
import {
  guardFetchHandler,
  guardNodeHandler,
  guardServerListeners,
  type AppErrorReporter,
  type FetchHandler,
  type NodeHandler,
} from './request-guard.js';

/**
 * Which calling convention to assume: `auto` detects, `node` treats a
 * function as `(req, res)` whatever its arity, `fetch` requires a fetch
 * function or an object with a `fetch` method.
 */
export type AppInterface = 'auto' | 'node' | 'fetch';

/** How the app is hosted; `listen-capture` is a server the app listened on. */
export type AppKind =
  | 'fetch'
  | 'http-server'
  | 'fastify'
  | 'nest'
  | 'koa'
  | 'node-handler'
  | 'listen-capture';

/** An app ready to receive injected connections on `server`. */
export interface HostedApp {
  kind: AppKind;
  /** Never bound by m2fleet; connections arrive via `'connection'`. */
  server: http.Server;
  /** Close the app (Fastify/Nest hooks run) and its server. */
  close(): Promise<void>;
}

/** Options for {@link hostExport}. */
export interface HostOptions {
  interface: AppInterface;
  /** Let @hono/node-server replace the global Request/Response. */
  fastWebGlobals: boolean;
  report: AppErrorReporter;
}

type Dict = Record<string | symbol, unknown>;

/**
 * Host an exported value, or return `undefined` when it is nothing m2fleet
 * can serve under `options.interface`. Rejects if a Fastify `ready()` or a
 * Nest `init()` rejects.
 */
export async function hostExport(
  value: unknown,
  options: HostOptions,
): Promise<HostedApp | undefined> {
  const mode = options.interface;
  const report = options.report;
  if (!isObjectLike(value)) return undefined;

  if (mode !== 'node' && typeof value.fetch === 'function') {
    const target = value;
    const fetch: FetchHandler = (request, env) =>
      (target.fetch as FetchHandler)(request, env);
    return hostFetch(fetch, options);
  }
  if (typeof value === 'function' && mode === 'fetch') {
    return hostFetch(value as FetchHandler, options);
  }
  if (mode === 'fetch') return undefined;

  if (value instanceof net.Server) {
    const server = asPlainHttpServer(value);
    return server && hostServer(server, 'http-server', report);
  }
  if (isFastify(value)) return hostFastify(value, report);
  if (isNest(value)) return hostNest(value, report);
  if (typeof value.callback === 'function' && Array.isArray(value.middleware)) {
    const listener = (value.callback as () => http.RequestListener)();
    return hostServer(http.createServer(listener), 'koa', report);
  }
  if (typeof value === 'function') {
    const arity = (value as unknown as (...args: unknown[]) => unknown).length;
    if (arity >= 2 || mode === 'node') {
      const handler = guardNodeHandler(value as NodeHandler, report, true);
      return hostServer(http.createServer(handler), 'node-handler', report);
    }
    return hostFetch(value as FetchHandler, options);
  }
  return undefined;
}

/**
 * Host a server the app created itself (an instance it exported or one it
 * called `listen` on): its `'request'` listeners are guarded and its idle
 * timers switched off.
 */
export function hostServer(
  server: http.Server,
  kind: AppKind,
  report: AppErrorReporter,
): HostedApp {
  guardServerListeners(server, report);
  disableIdleTimers(server);
  return { kind, server, close: () => closeServer(server) };
}

/**
 * A short description of a value for error messages, e.g. `a number (42)`
 * or `an object with keys [a, b]`.
 */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') {
    const name = value.name === '' ? 'anonymous' : value.name;
    return `a function ${name} taking ${value.length} argument(s)`;
  }
  if (typeof value !== 'object') {
    return `a ${typeof value} (${String(value).slice(0, 40)})`;
  }
  const keys = Object.keys(value).slice(0, 10);
  const kind = value.constructor?.name ?? 'object';
  return `an object (${kind}) with keys [${keys.join(', ')}]`;
}

function hostFetch(handler: FetchHandler, options: HostOptions): HostedApp {
  const listener = getRequestListener(
    guardFetchHandler(handler, options.report),
    // The override is process-wide and breaks `instanceof Request` in other
    // libraries, hence opt-in only.
    { overrideGlobalObjects: options.fastWebGlobals },
  );
  const server = http.createServer(listener);
  disableIdleTimers(server);
  return { kind: 'fetch', server, close: () => closeServer(server) };
}

async function hostFastify(app: Dict, report: AppErrorReporter) {
  await (app.ready as () => Promise<unknown>)();
  const hosted = hostServer(app.server as http.Server, 'fastify', report);
  hosted.close = async () => {
    await (app.close as () => Promise<unknown>)();
  };
  return hosted;
}

async function hostNest(app: Dict, report: AppErrorReporter) {
  await (app.init as () => Promise<unknown>)();
  const server = (app.getHttpServer as () => http.Server)();
  const hosted = hostServer(server, 'nest', report);
  hosted.close = async () => {
    await (app.close as () => Promise<unknown>)();
  };
  return hosted;
}

/**
 * Mongrel2 has already terminated TLS, so an `https.Server` is hosted by a
 * plain HTTP server sharing its request listeners. HTTP/2 and raw TCP
 * servers cannot take HTTP/1 bytes: `undefined`.
 */
function asPlainHttpServer(server: net.Server): http.Server | undefined {
  if (server instanceof http.Server) return server;
  if (!(server instanceof https.Server)) return undefined;
  const plain = http.createServer();
  for (const listener of server.listeners('request')) {
    plain.on('request', listener as http.RequestListener);
  }
  return plain;
}

/**
 * m2fleet owns idle handling: one injected Duplex stands for a Mongrel2
 * connection, which Mongrel2 times out itself. Node's keep-alive, header
 * and request timers would end that Duplex under a slow upload or between
 * requests, and m2fleet would then close a client connection Mongrel2
 * still considers alive. With both header and request timeouts at 0 Node
 * also skips its periodic connection check entirely.
 */
function disableIdleTimers(server: http.Server): void {
  server.keepAliveTimeout = 0;
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.timeout = 0;
}

/** Close a server; "not running" (never bound) counts as closed. */
function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
  });
}

function isObjectLike(value: unknown): value is Dict {
  return (
    (typeof value === 'object' && value !== null) || typeof value === 'function'
  );
}

function isFastify(value: Dict): boolean {
  return (
    typeof value.ready === 'function' &&
    typeof value.routing === 'function' &&
    typeof value.inject === 'function' &&
    value.server instanceof net.Server
  );
}

function isNest(value: Dict): boolean {
  return (
    typeof value.getHttpAdapter === 'function' &&
    typeof value.init === 'function' &&
    typeof value.getHttpServer === 'function'
  );
}
