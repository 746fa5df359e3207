/**
 * The standard sockets a unit serves beside ZeroMQ: plain HTTP (for direct
 * clients or a load balancer), uwsgi (nginx `uwsgi_pass`) and FastCGI
 * (nginx `fastcgi_pass`). Each request goes to the same app server as the
 * Mongrel2 ones. The fleet decides where the servers listen (see
 * {@link SocketListener}); in m2fleet's CLI every unit thread listens on
 * its own copy of one listening socket the master bound.
 */
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net from 'node:net';
import { plainResponse, reasonOf, refusalText } from './canned-responses.js';
import { serveFastCgi } from './fastcgi-server.js';
import type { GatewayContext, SocketKind, SocketLimits } from './gateway.js';
import { serveUwsgi } from './uwsgi-server.js';

/** One standard socket to serve. */
export interface SocketListener {
  readonly kind: SocketKind;
  /** The address as configured, for logs. */
  readonly address: string;
  /** Starts `server` listening (an inherited descriptor, or a test's port). */
  listen(server: net.Server): Promise<void>;
}

/** A listening socket server and how to drain it. */
export interface SocketServer {
  readonly kind: SocketKind;
  readonly address: string;
  readonly server: net.Server;
  /** Stop accepting. Connections already accepted are served. */
  close(): void;
  /** Close connections with no request under way (HTTP keep-alive). */
  closeIdle(): void;
  /** Open connections. */
  readonly connections: number;
  /** Close every connection left (after the drain). */
  closeAll(): void;
}

/** Builds the server for `listener` and starts it listening. */
export async function startSocketServer(
  listener: SocketListener, ctx: GatewayContext,
): Promise<SocketServer> {
  // Each open connection, with whether it is between requests (gateways
  // say so; HTTP keep-alive is Node's own closeIdleConnections()).
  const connections = new Map<net.Socket, () => boolean>();
  const server = listener.kind === 'http'
    ? createHttpFront(ctx.server, ctx.limits, ctx)
    : createGatewayServer(listener.kind, ctx, connections);
  if (listener.kind === 'http') {
    server.on('connection', (s: net.Socket) => {
      connections.set(s, () => false);
      s.once('close', () => connections.delete(s));
    });
  }
  await listener.listen(server);
  return {
    kind: listener.kind,
    address: listener.address,
    server,
    // Node's http close() would also drop connections accepted a moment
    // ago whose request has not arrived yet; only stop accepting here.
    close: () => {
      net.Server.prototype.close.call(server);
    },
    closeIdle: () => {
      if (server instanceof http.Server) server.closeIdleConnections();
      for (const [s, idle] of connections) if (idle()) s.end();
    },
    get connections() {
      return connections.size;
    },
    closeAll: () => {
      if (server instanceof http.Server) server.closeAllConnections();
      for (const s of connections.keys()) s.destroy();
    },
  };
}

function createGatewayServer(
  kind: 'uwsgi' | 'fastcgi', ctx: GatewayContext, connections: Map<net.Socket, () => boolean>,
): net.Server {
  const serve = kind === 'uwsgi' ? serveUwsgi : serveFastCgi;
  return net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    socket.once('close', () => connections.delete(socket));
    try {
      connections.set(socket, serve(socket, ctx));
    } catch (err) {
      ctx.log.error({ via: kind, err: (err as Error).message }, 'connection failed');
      socket.destroy();
    }
  });
}

// Node's own answers to requests its parser refuses, by error code.
function clientErrorStatus(code: string | undefined): number {
  if (code === 'HPE_HEADER_OVERFLOW') return 431;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  return 400;
}

/**
 * The HTTP server in front of the app: it owns the limits (head size and
 * count, body size, slow and idle clients) and hands each request to the
 * app's server, so the app's own settings stay as the app made them.
 * Upgrade and CONNECT requests go to the app when it listens for them.
 */
export function createHttpFront(
  app: Server, limits: SocketLimits, ctx: Pick<GatewayContext, 'refused' | 'log'>,
): Server {
  const front = http.createServer({
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headerTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.idleTimeoutMs,
    // Node checks the head and request timers this often (default 30 s).
    connectionsCheckingInterval: Math.max(250, Math.min(1000, limits.headerTimeoutMs / 4)),
    noDelay: true,
  });
  // One more than allowed, so that "too many" can be told from "exactly".
  front.maxHeadersCount = limits.maxHeaders + 1;

  const refuse = (res: ServerResponse, status: number, reason: string): void => {
    ctx.refused('http', reason);
    ctx.log.warn({ via: 'http', remote: res.socket?.remoteAddress, status, reason }, 'http request refused');
    res.shouldKeepAlive = false;
    res.writeHead(status, reasonOf(status), { 'content-type': 'text/plain', connection: 'close' });
    res.end(refusalText(status));
  };

  front.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.rawHeaders.length / 2 > limits.maxHeaders) {
      refuse(res, 431, 'too many headers');
      return;
    }
    if (limits.maxBody > 0) {
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > limits.maxBody) {
        refuse(res, 413, `body of ${declared} bytes over the limit`);
        return;
      }
      if (req.headers['transfer-encoding'] !== undefined) watchBody(req, limits.maxBody, ctx);
    }
    app.emit('request', req, res);
  });
  for (const event of ['upgrade', 'connect', 'checkContinue', 'checkExpectation'] as const) {
    if (app.listenerCount(event) === 0) continue;
    front.on(event, (...args: unknown[]) => app.emit(event, ...args));
  }
  front.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable
      || (socket as { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const status = clientErrorStatus(err.code);
    ctx.refused('http', err.code ?? 'bad request');
    ctx.log.debug({ via: 'http', remote: socket.remoteAddress, status, code: err.code }, 'bad http input');
    socket.end(plainResponse(status));
  });
  return front;
}

// A chunked body has no declared size: count it as Node's parser hands it
// over, and cut the connection when it passes the limit.
function watchBody(req: IncomingMessage, max: number, ctx: Pick<GatewayContext, 'refused' | 'log'>): void {
  let seen = 0;
  const push = req.push.bind(req);
  req.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk !== null && chunk !== undefined) {
      seen += (chunk as Buffer).length;
      if (seen > max) {
        ctx.refused('http', 'chunked body over the limit');
        ctx.log.warn({ via: 'http', remote: req.socket.remoteAddress, bytes: seen }, 'http request body over the limit');
        const socket = req.socket;
        const res = (socket as { _httpMessage?: ServerResponse })._httpMessage;
        if (res && !res.headersSent) socket.end(plainResponse(413));
        else socket.destroy();
        req.push = push;
        return false;
      }
    }
    return push(chunk, encoding);
  };
}
