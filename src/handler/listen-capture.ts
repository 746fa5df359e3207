/**
 * Captures `listen()` calls made by a hosted app, so that a module ending in
 * `app.listen(3000)` (or listening later, from an async `main`) hands its
 * server to m2fleet instead of binding a port.
 *
 * While a capture is active, `net.Server.prototype.listen` is replaced. A
 * call on an HTTP/1 server (`http.Server` or `https.Server`) does not bind:
 * the server is recorded, its `address()` reports the port the app asked
 * for on 127.0.0.1, and the callback and `'listening'` run on a later tick,
 * as Node's own listen does. Other servers (plain TCP, HTTP/2) pass through
 * to the real `listen`, because m2fleet could not host them anyway.
 *
 * Known shortcoming: once restored, a later `listen` binds for real. The
 * loader restores when loading ends (or at the first call made after it),
 * so Fastify's `listen()` on its default host `localhost`, when not
 * awaited, can still open its secondary `::1` server on the requested port
 * if its DNS lookup finishes after the restore. Export the Fastify
 * instance, or await its `listen`, to avoid that.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

type ListenFunction = typeof net.Server.prototype.listen;

/** One active capture; see {@link captureListen}. */
export interface ListenCapture {
  /** HTTP servers whose `listen` was intercepted, in call order. */
  readonly servers: readonly net.Server[];
  /** Whether the patch is still installed. */
  readonly isActive: boolean;
  /**
   * Restore the real `listen` as soon as the next call has been captured
   * (restores at once if one was captured already). Used when loading has
   * finished and only a late `listen` from an async `main` is awaited.
   */
  restoreAfterNextCapture(): void;
  /**
   * Resolve with the first captured server, or `undefined` when `ms`
   * milliseconds pass (or the capture is restored) before any call.
   */
  waitForServer(ms: number): Promise<net.Server | undefined>;
  /** Put the real `listen` back. Idempotent. */
  restore(): void;
}

const originalListen: ListenFunction = net.Server.prototype.listen;
let current: ListenCapture | undefined;

/**
 * Patch `net.Server.prototype.listen` until {@link ListenCapture.restore}
 * (or {@link restoreListen}). Only one capture may be active at a time.
 * Throws an `Error` if one already is (the loader serialises its loads).
 */
export function captureListen(): ListenCapture {
  if (current !== undefined) {
    throw new Error('listen capture: a capture is already active');
  }
  const servers: net.Server[] = [];
  const waiters = new Set<() => void>();
  let active = true;
  let restoreOnCapture = false;

  const restore = (): void => {
    if (!active) return;
    active = false;
    net.Server.prototype.listen = originalListen;
    current = undefined;
    for (const wake of waiters) wake();
  };

  const patched = function (this: net.Server, ...args: unknown[]) {
    if (!isHttpServer(this)) {
      return Reflect.apply(originalListen, this, args) as net.Server;
    }
    fakeListen(this, args);
    servers.push(this);
    for (const wake of waiters) wake();
    if (restoreOnCapture) restore();
    return this;
  };
  net.Server.prototype.listen = patched as ListenFunction;

  const capture: ListenCapture = {
    servers,
    get isActive() {
      return active;
    },
    restoreAfterNextCapture() {
      restoreOnCapture = true;
      if (servers.length > 0) restore();
    },
    waitForServer(ms) {
      if (servers.length > 0 || !active) return Promise.resolve(servers[0]);
      return new Promise((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(servers[0]);
        };
        const timer = setTimeout(wake, ms);
        waiters.add(wake);
      });
    },
    restore,
  };
  current = capture;
  return capture;
}

/**
 * Restore the real `listen` if a capture is active, for code outside the
 * loader that must bind for real (for instance a metrics endpoint opened
 * while an app is still expected to call `listen`). Returns whether a
 * capture was active.
 */
export function restoreListen(): boolean {
  if (current === undefined) return false;
  current.restore();
  return true;
}

function isHttpServer(server: net.Server): boolean {
  return server instanceof http.Server || server instanceof https.Server;
}

/**
 * Make `server` look listening on 127.0.0.1 without binding. The instance
 * `address()` reports the fake address only while the server has no real
 * handle, so binding it later (tests do) shows the true address.
 */
function fakeListen(server: net.Server, args: unknown[]): void {
  const info: net.AddressInfo = {
    address: '127.0.0.1',
    family: 'IPv4',
    port: requestedPort(args),
  };
  Object.defineProperty(server, 'address', {
    configurable: true,
    writable: true,
    value: function address(this: net.Server) {
      return this.listening ? net.Server.prototype.address.call(this) : info;
    },
  });

  const callback = args[args.length - 1];
  if (typeof callback === 'function') {
    server.once('listening', callback as () => void);
  }
  process.nextTick(() => server.emit('listening'));
}

/** The port in `listen(port, ...)` or `listen({ port })`; 0 otherwise. */
function requestedPort(args: unknown[]): number {
  const first = args[0];
  let raw: unknown = first;
  if (typeof first === 'object' && first !== null && 'port' in first) {
    raw = (first as { port?: unknown }).port;
  }
  const port = typeof raw === 'string' ? Number(raw) : raw;
  if (typeof port === 'number' && Number.isInteger(port)) {
    if (port >= 0 && port <= 65535) return port;
  }
  return 0;
}
